"""Dual randomized smoothing: combining a certified sigma choice with the classifier's certificate.

Sun, Mao & Vechev, "Dual Randomized Smoothing: Beyond Global Noise Variance"
(arXiv 2512.01782), Theorem 1. A sigma estimator ``h(x) -> j`` (an index into the noise
levels ``sigmas``) is smoothed at one global level ``sigma_estimator``:
``H(x) = argmax_j P(h(x + e) = j)``, ``e ~ N(0, sigma_estimator^2 I)``. The dual
classifier is ``G(x) = g_{sigmas[H(x)]}(x)``: the classifier (or expert ``H(x)``)
smoothed at the noise level the estimator picks for ``x``.

Statement. If ``H(x') = j`` for every ``||x' - x||_2 < R_sigma`` and
``g_{sigmas[j]}(x') = A`` for every ``||x' - x||_2 < R_c``, then ``G(x') = A`` for
every ``||x' - x||_2 < min(R_sigma, R_c)``.

Proof. For such an ``x'``, ``||x' - x|| < R_sigma`` gives ``H(x') = j``, so
``G(x') = g_{sigmas[j]}(x')``; ``||x' - x|| < R_c`` gives ``g_{sigmas[j]}(x') = A``. No
smaller ball is needed and none larger is implied: outside ``R_sigma`` the estimator may
pick another level, at which the classifier's certificate says nothing.

Both radii come from Cohen et al.'s Theorem 1
(:func:`~smoothcert.certificates.gaussian.gaussian_radius`):
``R_sigma = sigma_estimator Phi^-1(p_lower of H's choice)`` and
``R_c = sigmas[j] Phi^-1(p_lower of A)``. If the first holds with probability
``1 - alpha_1`` and the second with ``1 - alpha_2``, both hold with probability at least
``1 - alpha_1 - alpha_2`` (union bound); the second stage must use noise drawn
independently of the first (DESIGN.md, "Input-dependent sigma"). All radii are L2, in the
units of the tensor the noise is added to.

Example:
    >>> radius, limited = dual_radius(0.8, 0.5)
    >>> float(radius), str(limited)
    (0.5, 'classifier')
    >>> radius, limited = dual_radius([0.3, 1.0], [0.5, 1.0])
    >>> radius.tolist(), limited.tolist()
    ([0.3, 1.0], ['sigma', 'sigma'])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert._validation import check_nonnegative_array
from smoothcert.errors import InvalidParameterError

LIMITS = ("sigma", "classifier")
"""What limits a dual radius: the sigma estimator's certificate (``"sigma"``, ties
included: the estimator's ball is the binding constraint) or the classifier's."""


def dual_radius(radius_sigma: Any, radius_classifier: Any) -> tuple[Any, Any]:
    """The dual certified radius ``min(R_sigma, R_c)`` and which of the two limits it.

    Args:
        radius_sigma: the smoothed estimator's certified radius ``R_sigma`` (>= 0, L2,
            input units): its choice of sigma is constant on that ball.
        radius_classifier: the certified radius ``R_c`` (>= 0) of the classifier
            smoothed at the chosen sigma.

    Returns:
        ``(radius, limited_by)``: arrays (0-d for scalar inputs) of the radius and of
        ``"sigma"`` or ``"classifier"`` (:data:`LIMITS`; ``"sigma"`` on ties).

    Raises:
        InvalidParameterError: on negative, NaN or infinite radii, or shapes that do not
            broadcast.
    """
    r_sigma = check_nonnegative_array(radius_sigma, name="radius_sigma")
    r_class = check_nonnegative_array(radius_classifier, name="radius_classifier")
    try:
        r_sigma, r_class = np.broadcast_arrays(r_sigma, r_class)
    except ValueError:
        raise InvalidParameterError(
            f"radius_sigma of shape {r_sigma.shape} and radius_classifier of shape "
            f"{r_class.shape} do not broadcast; valid: arrays of broadcastable shapes"
        ) from None
    radius: NDArray[np.float64] = np.minimum(r_sigma, r_class)
    limited = np.where(r_sigma <= r_class, LIMITS[0], LIMITS[1])
    return radius, limited
