"""Pure statistics (numpy/scipy, no torch): counts or scores -> confidence bounds."""

from smoothcert.stats.binomial import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    runner_up_upper,
)
from smoothcert.stats.bounded import (
    betting_lower,
    betting_upper,
    empirical_bernstein_lower,
    empirical_bernstein_upper,
    hoeffding_lower,
    hoeffding_upper,
)

__all__ = [
    "betting_lower",
    "betting_upper",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "empirical_bernstein_lower",
    "empirical_bernstein_upper",
    "hoeffding_lower",
    "hoeffding_upper",
    "runner_up_upper",
]
