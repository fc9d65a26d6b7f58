"""Dual smoothing through the dataset runner: records, resume, recertify, report, fast path."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_toys import DUAL_SIGMAS, dual_model, image_dataset, image_model, sigma_estimator_model
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.dual import DualSmoothingModel
from smoothcert.reports import dual_table, gap_table, load_results
from smoothcert.results import read_results
from smoothcert.results.recertify import recertify
from smoothcert.runner import RunConfig
from smoothcert.runner.run import run_certification

PARAMS = {"sigmas": DUAL_SIGMAS, "sigma_estimator": 1.0, "n0": 10, "n": 200, "alpha": 0.02}


def config(**changes) -> RunConfig:
    fields = dict(method="dual", params=PARAMS, model="toy_dual", dataset="toy_images")
    fields.update(changes)
    return RunConfig(batch_size=64, **fields)


def strip_time(records):
    return [
        {
            **{k: v for k, v in r.items() if k != "seconds"},
            "evidence": dict(r["evidence"], seconds=0),
        }
        for r in records
    ]


def test_dual_run_records_resume_recertify_and_report(tmp_path) -> None:
    data = image_dataset(6)
    path = tmp_path / "dual.jsonl"
    run_certification(config(num_examples=3), path, model=dual_model(), dataset=data)
    run_certification(config(), path, model=dual_model(), dataset=data)  # resumes: 3 more
    records = read_results(path).records
    assert [r["index"] for r in records] == data.indices.tolist()
    for r in records:
        details = r["details"]
        assert r["method"] == "dual" and details["kind"] == "dual_details"
        roles = [s["role"] for s in r["evidence"]["stages"]]
        assert roles[:2] == ["sigma_selection", "sigma_estimation"]
        if details["abstained_at"] == "sigma":
            assert roles == ["sigma_selection", "sigma_estimation"]  # nothing more drawn
        else:
            assert roles == ["sigma_selection", "sigma_estimation", "selection", "estimation"]
        if not r["abstained"]:
            assert r["radius"] == min(details["radius_sigma"], details["radius_classifier"])
    routed = {r["details"]["sigma_index"] for r in records}
    assert len(routed) >= 2, "the toy estimator routes the toy images to several sigmas"

    # one uninterrupted run gives the same records as the resumed one
    again = tmp_path / "again.jsonl"
    run_certification(config(), again, model=dual_model(), dataset=data)
    assert strip_time(read_results(again).records) == strip_time(records)

    # re-deciding at the same alpha reproduces every record; at another alpha it stays a
    # valid dual decision (no classifier samples -> abstain, never a crash)
    same = recertify(path, tmp_path / "same.jsonl")
    assert strip_time(read_results(same).records) == strip_time(records)
    for alpha in (0.002, 0.5):
        other = read_results(recertify(path, tmp_path / f"a{alpha}.jsonl", alpha=alpha))
        assert all(r["alpha"] == alpha for r in other.records)

    # the report's dual tables, next to a single-sigma run of the same examples
    single = tmp_path / "single.jsonl"
    run_certification(
        RunConfig(
            params={"sigma": 0.5, "n0": 10, "n": 200, "alpha": 0.02},
            model="toy",
            dataset="toy_images",
            batch_size=64,
        ),
        single,
        model=image_model(1),
        dataset=data,
    )
    files = [load_results(path), load_results(single)]
    table = dual_table(files)
    assert "routed to sigma = 0.25" in table and "| examples | 6 |" in table
    gaps = gap_table(files, [0.0, 0.25])
    assert gaps.count("\n") == 3 and "single" in gaps


def test_dual_run_with_channels_last_prepares_every_part(tmp_path) -> None:
    data = image_dataset(2)
    plain = run_certification(config(), tmp_path / "a.jsonl", model=dual_model(), dataset=data)
    fast = run_certification(
        config(channels_last=True), tmp_path / "b.jsonl", model=dual_model(), dataset=data
    )
    a, b = read_results(plain).records, read_results(fast).records
    # these 2-D linear models run the same kernels either way
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
    assert np.allclose([r["radius"] for r in a], [r["radius"] for r in b])


def test_dual_run_rejects_a_plain_model_before_writing(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    with pytest.raises(InvalidParameterError, match="DualSmoothingModel"):
        run_certification(config(), path, model=image_model(0), dataset=image_dataset(2))
    assert not path.exists()


def test_dual_run_rejects_experts_of_other_sigmas(tmp_path) -> None:
    wrong = DualSmoothingModel(
        sigma_estimator_model(), [image_model(s) for s in (0, 1, 2)], sigmas=(0.12, 0.25, 0.5)
    ).eval()
    with pytest.raises(InvalidParameterError, match=r"trained for sigmas = \(0.12, 0.25, 0.5\)"):
        run_certification(config(), tmp_path / "x.jsonl", model=wrong, dataset=image_dataset(2))


def test_dual_cli_defaults_are_the_papers() -> None:
    from smoothcert.cli import build_run_config

    options = {"sigmas": None, "sigma_estimator": None, "alpha_split": None}
    cfg = build_run_config(
        method="dual",
        options=options,
        run_fields={"model": "fmnist_cnn", "dataset": "fashion_mnist"},
    )
    assert cfg.params["sigmas"] == [0.25, 0.5, 1.0]
    assert (cfg.params["sigma_estimator"], cfg.params["alpha_split"]) == (1.0, 0.5)
    assert (cfg.params["n0"], cfg.params["n"], cfg.params["alpha"]) == (100, 10_000, 0.001)
    assert cfg.samples_per_example() == 2 * 10_100


def test_bundled_dual_run_on_fashion_mnist(tmp_path) -> None:
    """The bundled experts and estimator, loaded by the method's loader, on real data."""
    cfg = RunConfig(
        method="dual",
        params={**PARAMS, "n": 300},
        model="fmnist_cnn",
        dataset="fashion_mnist",
        split="test",
        num_examples=2,
        batch_size=150,
    )
    path = run_certification(cfg, tmp_path / "fmnist.jsonl")
    contents = read_results(path)
    assert len(contents.records) == 2
    assert all(r["details"]["sigma"] in DUAL_SIGMAS for r in contents.records)
    assert contents.header["model_fingerprint"] is not None
    with pytest.raises(InvalidParameterError, match="no sigma estimator"):
        run_certification(
            RunConfig(**{**cfg.to_dict(), "model": "digits_cnn", "dataset": "digits"}),
            tmp_path / "digits.jsonl",
        )
    assert not (tmp_path / "digits.jsonl").exists()
