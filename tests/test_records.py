import math

import pytest

from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult

BASE = dict(
    method="cohen",
    prediction=3,
    abstained=False,
    radius=0.42,
    p_lower=0.8,
    n0=100,
    n=1000,
    alpha=0.001,
    seed=0,
    seconds=0.1,
    counts_selection=(0, 0, 0, 100),
    counts_estimation=(0, 10, 0, 990),
)


def test_json_round_trip_keeps_every_field():
    r = CertifyResult(**BASE, p_upper=0.1, radius_curve=(0.4, 0.2, 0.0), params={"sigma": 0.25})
    back = CertifyResult.from_json(r.to_json())
    assert back == r
    assert back.radius_curve == (0.4, 0.2, 0.0)


def test_abstention_is_an_explicit_flag():
    r = CertifyResult(**{**BASE, "prediction": None, "abstained": True, "radius": 0.0})
    assert r.prediction is None and r.abstained


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"prediction": None}, "abstained = False"),
        ({"abstained": True}, "abstained = True"),
        ({"prediction": True}, "prediction = True"),
        ({"radius": -1.0}, "radius = -1.0"),
        ({"radius": math.inf}, "radius = inf"),
        ({"p_lower": math.nan}, "p_lower = nan"),
        ({"p_lower": 1.5}, "p_lower = 1.5"),
        ({"alpha": 0.0}, "alpha = 0.0"),
        ({"n": -3}, "n = -3"),
        ({"counts_estimation": (1.7, 2)}, "entry 1.7"),
        ({"radius_unit": "linf"}, "radius_unit = 'linf'"),
    ],
)
def test_inconsistent_records_rejected(overrides, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        CertifyResult(**{**BASE, **overrides})
    assert fragment in str(info.value)


def test_from_dict_names_missing_and_unknown_fields():
    data = CertifyResult(**BASE).to_dict()
    with pytest.raises(InvalidParameterError, match="unknown"):
        CertifyResult.from_dict({**data, "extra": 1})
    del data["alpha"]
    with pytest.raises(InvalidParameterError, match="'alpha'"):
        CertifyResult.from_dict(data)
