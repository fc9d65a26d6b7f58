"""Summarise hybrid-fields runs on the fair test split: the tables of docs/tabular.md.

Reads ``fair_sigma{0.25,0.5,1.0}.jsonl`` from the directory given as the first argument
(default ``/work/runs/tabular``), as written by the commands in docs/tabular.md.
"""

import sys

import numpy as np

from smoothcert.models import load_model
from smoothcert.models.train_tabular import TABULAR_BETAS, tabular_accuracy
from smoothcert.reports import load_results
from smoothcert.reports.tables import dr_grid

RUNS = sys.argv[1] if len(sys.argv) > 1 else "/work/runs/tabular"
D = [0, 1, 2, 3]
R = [0.0, 0.25, 0.5, 1.0]
print(
    "| sigma | base clean acc | base noisy acc | smoothed acc | abstain | "
    + " | ".join(f"d={d}, r={r:g}" for d in D for r in R)
    + " | s/row |"
)
for s in ("0.25", "0.5", "1.0"):
    res = load_results(f"{RUNS}/fair_sigma{s}.jsonl")
    recs = res.records
    model = load_model("tabular_mlp", sigma=float(s))
    clean = tabular_accuracy(model)
    noisy = tabular_accuracy(model, sigma=float(s), betas=TABULAR_BETAS)
    smoothed = np.mean([(not r["abstained"]) and r["prediction"] == r["label"] for r in recs])
    abstain = np.mean([r["abstained"] for r in recs])
    grid = dr_grid(res, D, R)
    secs = np.mean([r["seconds"] for r in recs])
    cells = " | ".join(f"{100 * grid[i, j]:.1f}%" for i in range(len(D)) for j in range(len(R)))
    print(
        f"| {s} | {clean:.3f} | {noisy:.3f} | {smoothed:.3f} | {abstain:.3f} | {cells} | "
        f"{secs:.3f} |"
    )
    print("   grid d x r:", np.round(100 * grid, 1).tolist(), "n =", len(recs))
