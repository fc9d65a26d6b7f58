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
from smoothcert.stats.combiners import (
    COMBINER_BOUNDS,
    COMBINERS,
    combine,
    combine_bonferroni,
    combine_cpm,
    combine_mono,
    combine_top2,
    cpm_buckets,
)
from smoothcert.stats.sequential import (
    SEQUENCE_BOUNDS,
    checkpoint_schedule,
    mixture_lower,
    mixture_upper,
    sequence_lower,
    sequence_upper,
    union_levels,
    union_lower,
    union_upper,
)

__all__ = [
    "COMBINERS",
    "COMBINER_BOUNDS",
    "SEQUENCE_BOUNDS",
    "betting_lower",
    "betting_upper",
    "checkpoint_schedule",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "combine",
    "combine_bonferroni",
    "combine_cpm",
    "combine_mono",
    "combine_top2",
    "cpm_buckets",
    "empirical_bernstein_lower",
    "empirical_bernstein_upper",
    "hoeffding_lower",
    "hoeffding_upper",
    "mixture_lower",
    "mixture_upper",
    "runner_up_upper",
    "sequence_lower",
    "sequence_upper",
    "union_levels",
    "union_lower",
    "union_upper",
]
