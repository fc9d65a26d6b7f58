"""smoothcert.certificates: pure math (numpy/scipy), a probability bound -> a certified region."""

from smoothcert.certificates.gaussian import (
    gaussian_radius,
    gaussian_radius_top2,
    max_certifiable_radius,
)
from smoothcert.certificates.hybrid import hybrid_lower_bound, hybrid_radius_curve
from smoothcert.certificates.lipschitz import (
    lipschitz_radius,
    lipschitz_radius_top2,
    softmax_score_lipschitz,
)
from smoothcert.certificates.tokens import (
    TokenField,
    max_certifiable_tokens,
    max_certifiable_tokens_for_samples,
    token_lower_bound,
)

__all__ = [
    "gaussian_radius",
    "gaussian_radius_top2",
    "max_certifiable_radius",
    "TokenField",
    "hybrid_lower_bound",
    "hybrid_radius_curve",
    "lipschitz_radius",
    "lipschitz_radius_top2",
    "softmax_score_lipschitz",
    "max_certifiable_tokens",
    "max_certifiable_tokens_for_samples",
    "token_lower_bound",
]
