"""Pure statistics (numpy/scipy, no torch): counts or scores -> confidence bounds."""

from smoothcert.stats.binomial import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    runner_up_upper,
)

__all__ = ["clopper_pearson_lower", "clopper_pearson_upper", "runner_up_upper"]
