"""Certified vs empirical reports: attack files next to certificates (real toy runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline_toys import image_dataset, image_model
from smoothcert.errors import InvalidParameterError
from smoothcert.reports import certified_accuracy, load_many
from smoothcert.reports.attack import (
    attack_grid,
    attack_pairs,
    attack_table,
    empirical_accuracy,
    is_attack,
    plot_certified_vs_empirical,
)
from smoothcert.reports.results import ResultFile
from smoothcert.reports.tables import claim_heading
from smoothcert.runner import RunConfig, run_certification

GRID = (0.1, 0.2, 0.4)


def run(tmp_path: Path, method: str, params: dict, name: str, sigma: float = 0.5) -> Path:
    config = RunConfig(
        method=method,
        params={"sigma": sigma, **params},
        model="toy",
        dataset="toy_images",
        split="test",
        batch_size=64,
        seed=1,
    )
    return run_certification(
        config, tmp_path / f"{name}.jsonl", model=image_model(), dataset=image_dataset(8)
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[ResultFile]:
    tmp = tmp_path_factory.mktemp("attack_report")
    cert = run(tmp, "cohen", {"n0": 20, "n": 500, "alpha": 0.01}, "cert")
    other = run(tmp, "cohen", {"n0": 20, "n": 500, "alpha": 0.01}, "cert_s1", sigma=1.0)
    att = run(
        tmp,
        "attack-l2",
        {"radii": GRID, "steps": 10, "noise_samples": 8, "eval_n": 500},
        "pgd",
    )
    return load_many([cert, other, att])


def test_empirical_accuracy_is_the_upper_bound_step_function(files) -> None:
    cert, _, att = files
    assert is_attack(att) and not is_attack(cert)
    assert attack_grid(att).tolist() == list(GRID)
    correct = np.array([r["correct"] for r in att.records])
    radius = att.radii
    for r, needed in [(0.0, 0.0), (0.05, 0.0), (0.1, 0.1), (0.15, 0.1), (0.4, 0.4), (9.0, 0.4)]:
        expected = float(np.mean(correct & (radius >= needed)))
        assert empirical_accuracy(att, [r])[0] == pytest.approx(expected)
    # at grid radii it is the plain "correct and radius >= r" of the certified reports
    assert np.allclose(empirical_accuracy(att, GRID), certified_accuracy(att, list(GRID)))
    # and it never increases with r
    rs = np.linspace(0, 1, 50)
    assert np.all(np.diff(empirical_accuracy(att, rs)) <= 0)


def test_certified_is_below_empirical_on_a_real_run(files) -> None:
    cert, _, att = files
    grid = np.array((0.0, *GRID))
    assert np.all(np.atleast_1d(certified_accuracy(cert, grid)) <= empirical_accuracy(att, grid))


def test_table_has_certified_empirical_and_gap_per_radius(files) -> None:
    cert, other, att = files
    assert attack_pairs(files) == [(att, cert)]  # paired by sigma
    table = attack_table(files).splitlines()
    assert (
        table[0]
        == "| radius | cert certified | cert_s1 certified | pgd empirical | gap pgd - cert |"
    )
    assert [row.split(" | ")[0] for row in table[2:]] == ["| 0", "| 0.1", "| 0.2", "| 0.4"]
    for row, r in zip(table[2:], (0.0, *GRID), strict=True):
        cells = row.strip("| ").split(" | ")
        c = certified_accuracy(cert, r)
        e = empirical_accuracy(att, [r])[0]
        assert cells[1] == f"{100 * c:.1f}%" and cells[3] == f"{100 * e:.1f}%"
        assert cells[4] == f"{100 * (e - c):+.1f} pp"
    assert "NOT certified" in claim_heading("empirical")


def test_plot_writes_a_png(files, tmp_path) -> None:
    out = plot_certified_vs_empirical(files, tmp_path / "sub" / "vs.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidParameterError, match="at least 1 attack file"):
        plot_certified_vs_empirical(files[:2], tmp_path / "none.png")
    with pytest.raises(InvalidParameterError, match="no attack radius grid"):
        attack_grid(files[0])


def test_hybrid_attack_table_next_to_the_certified_region(tmp_path) -> None:
    from pipeline_toys import VOCAB, TextImageModel, text_image_dataset
    from smoothcert.reports.attack import hybrid_attack_table, is_hybrid_attack
    from smoothcert.reports.tables import dr_grid

    filt = {"sigma": 0.25, "beta": 0.1, "alphabet": VOCAB, "n0": 0, "alpha": 0.01}
    filt |= {"target": 1, "tau": 0.5}
    paths = []
    for method, extra in (
        ("hybrid", {"n": 1000}),
        (
            "attack-hybrid",
            {"n": 500, "radii": (0.0, 0.3), "attack_d_max": 1, "steps": 8, "candidates": 8},
        ),
    ):
        config = RunConfig(
            method=method,
            params={**filt, **extra},
            model="toy",
            dataset="toy_text_image",
            split="test",
            batch_size=64,
            seed=2,
        )
        paths.append(
            run_certification(
                config,
                tmp_path / f"{method}.jsonl",
                model=TextImageModel().eval(),
                dataset=text_image_dataset(),
            )
        )
    cert, att = load_many(paths)
    assert is_hybrid_attack(att) and not is_hybrid_attack(cert)
    rows = hybrid_attack_table([cert, att]).splitlines()
    assert (
        rows[0]
        == "| d | r | hybrid certified | attack-hybrid still flagged | attack-hybrid success |"
    )
    points = [(0, 0.3), (1, 0.0), (1, 0.3)]
    flagged = [r for r in att.records if not r["abstained"]]
    for row, (d, r) in zip(rows[2:], points, strict=True):
        cells = row.strip("| ").split(" | ")
        i = points.index((d, r))
        certified = float(dr_grid(cert, [d], [r])[0, 0])
        kept = [
            rec["correct"]
            and not any(
                u
                for p, u in zip(points, rec["details"]["unflagged"], strict=True)
                if p[0] <= d and p[1] <= r
            )
            for rec in att.records
        ]
        success = sum(rec["details"]["unflagged"][i] for rec in flagged) / len(flagged)
        assert cells[2] == f"{100 * certified:.1f}%"
        assert cells[3] == f"{100 * sum(kept) / len(att):.1f}%"
        assert cells[4] == f"{100 * success:.1f}%"
        assert certified <= sum(kept) / len(att)  # certified below empirical
