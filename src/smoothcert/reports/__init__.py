"""Reports from result files: certified accuracy, ACR, tables, plots, TSV export.

Reads the JSON-lines files written by :func:`smoothcert.runner.run_certification`
(format in :mod:`smoothcert.results.store`); never imports torch.

Example:
    >>> from pathlib import Path
    >>> rec = {"index": 0, "label": 0, "correct": True, "abstained": False, "radius": 0.4}
    >>> toy = ResultFile(path=Path("toy.jsonl"), header={}, records=[rec])
    >>> average_certified_radius(toy), certified_accuracy(toy, [0.0, 0.5]).tolist()
    (0.4, [1.0, 0.0])
"""

from smoothcert.reports.dual import dual_table, gap_table, is_dual
from smoothcert.reports.export import TSV_COLUMNS, export_tsv, tsv_text
from smoothcert.reports.filter import (
    FilterSummary,
    filter_summary,
    filter_tables,
    is_filter,
    plot_filter_heatmaps,
)
from smoothcert.reports.metrics import (
    Summary,
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    default_radii,
    parse_radii,
    summarize,
)
from smoothcert.reports.plot import (
    certified_accuracy_curve,
    default_title,
    plot_certified_accuracy,
    plot_dr_heatmap,
)
from smoothcert.reports.results import ResultFile, default_labels, load_many, load_results
from smoothcert.reports.samples import (
    is_sequential,
    plot_samples_histogram,
    samples_per_input,
    samples_table,
)
from smoothcert.reports.tables import (
    claim_heading,
    dr_grid,
    dr_table,
    group_by_claim,
    latex_table,
    markdown_table,
    radius_grid,
    summaries,
)

__all__ = [
    "TSV_COLUMNS",
    "FilterSummary",
    "ResultFile",
    "Summary",
    "abstain_rate",
    "average_certified_radius",
    "certified_accuracy",
    "certified_accuracy_curve",
    "claim_heading",
    "default_title",
    "dr_grid",
    "dr_table",
    "dual_table",
    "gap_table",
    "is_dual",
    "group_by_claim",
    "is_sequential",
    "plot_dr_heatmap",
    "plot_samples_histogram",
    "samples_per_input",
    "samples_table",
    "default_labels",
    "default_radii",
    "export_tsv",
    "filter_summary",
    "filter_tables",
    "is_filter",
    "plot_filter_heatmaps",
    "latex_table",
    "load_many",
    "load_results",
    "markdown_table",
    "parse_radii",
    "plot_certified_accuracy",
    "radius_grid",
    "summaries",
    "summarize",
    "tsv_text",
]
