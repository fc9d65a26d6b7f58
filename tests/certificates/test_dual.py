"""dual_radius: min(R_sigma, R_c) and which side limits it (arXiv 2512.01782, Theorem 1)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smoothcert.certificates.dual import LIMITS, dual_radius
from smoothcert.errors import InvalidParameterError

radii = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(radii, radii)
def test_scalar_is_the_min_and_names_the_limiting_side(r_sigma, r_c):
    radius, limited = dual_radius(r_sigma, r_c)
    assert np.ndim(radius) == 0 and np.ndim(limited) == 0
    assert float(radius) == min(r_sigma, r_c)
    assert str(limited) == ("sigma" if r_sigma <= r_c else "classifier")
    assert str(limited) in LIMITS


@given(st.lists(st.tuples(radii, radii), min_size=1, max_size=20))
def test_arrays_elementwise(pairs):
    r_sigma, r_c = (np.array(v) for v in zip(*pairs, strict=True))
    radius, limited = dual_radius(r_sigma, r_c)
    assert radius.shape == limited.shape == r_sigma.shape
    for k, (a, b) in enumerate(pairs):
        assert radius[k] == min(a, b)
        assert limited[k] == ("sigma" if a <= b else "classifier")


def test_ties_are_limited_by_sigma_and_zero_radii_are_fine():
    for r in (0.0, 0.3, 1e6):
        radius, limited = dual_radius(r, r)
        assert float(radius) == r and str(limited) == "sigma"
    radius, limited = dual_radius([0.0, 0.7], 0.0)
    assert radius.tolist() == [0.0, 0.0] and limited.tolist() == ["sigma", "classifier"]


def test_broadcasting():
    radius, limited = dual_radius([[0.1], [0.9]], [0.2, 0.5, 1.0])
    assert radius.shape == (2, 3)
    np.testing.assert_array_equal(radius, [[0.1, 0.1, 0.1], [0.2, 0.5, 0.9]])
    assert limited.tolist() == [
        ["sigma", "sigma", "sigma"],
        ["classifier", "classifier", "sigma"],
    ]


@pytest.mark.parametrize(
    ("r_sigma", "r_c", "fragment"),
    [
        (-0.1, 0.5, "radius_sigma = -0.1"),
        (0.5, -1e-12, "radius_classifier = -1e-12"),
        (math.nan, 0.5, "radius_sigma"),
        (0.5, math.nan, "radius_classifier"),
        (math.inf, 0.5, "radius_sigma"),
        ([0.1, -0.2], 0.5, "radius_sigma = -0.2"),
        ("abc", 0.5, "radius_sigma"),
        ([0.1, 0.2], [0.1, 0.2, 0.3], "do not broadcast"),
    ],
)
def test_rejects_bad_radii(r_sigma, r_c, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        dual_radius(r_sigma, r_c)
    assert fragment in str(info.value)
