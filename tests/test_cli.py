from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from result_records import cohen_record, write_result_file
from smoothcert.certificates.gaussian import gaussian_radius, max_certifiable_radius
from smoothcert.cli import app
from smoothcert.stats.binomial import clopper_pearson_lower

runner = CliRunner()

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str, code: int = 2) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    err = result.stderr
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, (needle, err)


def write_results(path: Path, radii: list[float | None]) -> Path:
    # real records (validated on load): label 1, predicted 1 at ``r``, or abstained
    records = [
        cohen_record(i, 1, None if r is None else 1, 0.0 if r is None else r, 0.5)
        for i, r in enumerate(radii)
    ]
    return write_result_file(path, records, config_hash="h" * 64)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_results(tmp_path / "a.jsonl", [0.3, 0.6, None, 1.2]),
        write_results(tmp_path / "b.jsonl", [0.1, None]),
    )


# ------------------------------------------------------------------ radius


def test_radius_prints_bound_radius_and_max() -> None:
    result = invoke("radius", "--k", "990", "-n", "1000", "--alpha", "0.001", "--sigma", "0.25")
    assert result.exit_code == 0, result.output
    p_lower = float(clopper_pearson_lower(990, 1000, alpha=0.001))
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"p_lower = {p_lower:.6f}")
    assert lines[1].startswith(f"radius  = {float(gaussian_radius(p_lower, sigma=0.25)):.6f}")
    best = max_certifiable_radius(n=1000, alpha=0.001, sigma=0.25)
    assert f"max certifiable radius with n=1000, alpha=0.001: {best:.6f}" in lines[2]


def test_radius_top2_and_abstain() -> None:
    top2 = invoke(
        "radius", "--k", "990", "--n", "1000", "--sigma", "0.25", "--top2", "--k-runner-up", "5"
    )
    assert top2.exit_code == 0 and "p_upper = " in top2.stdout
    assert "radius  = 0.50" in top2.stdout
    low = invoke("radius", "--k", "400", "-n", "1000", "--sigma", "1")
    assert low.exit_code == 0 and "abstain" in low.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--k", "2000", "-n", "1000", "--sigma", "1"], ["k = 2000", "0 <= k <= 1000"]),
        (["--k", "5", "-n", "0", "--sigma", "1"], ["n = 0"]),
        (["--k", "5", "-n", "10", "--sigma", "-1"], ["sigma = -1.0", "sigma > 0"]),
        (["--k", "5", "-n", "10", "--sigma", "1", "--alpha", "1.5"], ["alpha = 1.5"]),
        (["--k", "abc", "-n", "10", "--sigma", "1"], ["--k", "'abc'"]),
        (["--k", "5", "-n", "10", "--sigma", "1", "--top2", "--k-runner-up", "9"], ["= 9"]),
        (["-n", "10", "--sigma", "1"], ["Missing option '--k'"]),
    ],
)
def test_radius_bad_input(args: list[str], needles: list[str]) -> None:
    assert_one_line_error(invoke("radius", *args), *needles)


# ------------------------------------------------------------------ report / export


def test_report_markdown(files: tuple[Path, Path]) -> None:
    result = invoke("report", *map(str, files), "--radii", "0,0.5,1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "| radius | a | b |"
    assert lines[2:5] == ["| 0 | 75.0% | 50.0% |", "| 0.5 | 50.0% | 0.0% |", "| 1 | 25.0% | 0.0% |"]
    assert lines[5] == "| ACR | 0.525 | 0.050 |"
    assert lines[6] == "| abstained | 25.0% | 50.0% |"
    assert lines[7] == "| examples | 4 | 2 |"


def test_report_latex_plot_and_labels(tmp_path: Path, files: tuple[Path, Path]) -> None:
    png = tmp_path / "curve.png"
    result = invoke(
        "report", *map(str, files), "--latex", "--plot", str(png), "--label", "x_1", "--label", "y"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(r"\begin{tabular}{lrr}")
    assert r"radius & x\_1 & y \\" in result.stdout
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_report_bad_input(tmp_path: Path, files: tuple[Path, Path]) -> None:
    assert_one_line_error(invoke("report", str(files[0]), "--radii", "0,x"), "radius = 'x'")
    assert_one_line_error(invoke("report", str(files[0]), "--radii", "-1"), "radius = -1.0")
    missing = tmp_path / "missing.jsonl"
    assert_one_line_error(invoke("report", str(missing)), str(missing), "does not exist", code=1)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(files[0].read_text().replace('"index": 1,', '"index": 1', 1))
    assert_one_line_error(invoke("report", str(broken)), "line 3 of 5 is corrupt", code=1)
    assert_one_line_error(invoke("report"), "Missing argument")


def test_export_tsv(tmp_path: Path, files: tuple[Path, Path]) -> None:
    result = invoke("export", str(files[0]), "--format", "tsv")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == ["idx", "label", "predict", "radius", "correct", "time"]
    assert rows[3] == ["2", "1", "-1", "0.0", "0", "0:00:00.500000"]
    out = tmp_path / "a.tsv"
    to_file = invoke("export", str(files[0]), "--output", str(out))
    assert to_file.exit_code == 0 and out.read_text() == result.stdout
    assert_one_line_error(invoke("export", str(files[0]), "--format", "csv"), "format = 'csv'")


# ------------------------------------------------------------------ certify: bad input


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--alpha", "2"], ["alpha = 2.0", "0 < alpha < 1"]),
        (["--sigma", "0"], ["sigma = 0.0"]),
        (["-n", "0"], ["n = 0"]),
        (["--n0", "-5"], ["n0 = -5"]),
        (["--batch-size", "0"], ["batch_size = 0"]),
        (["--num-examples", "0"], ["num_examples = 0"]),
        (["--skip", "0"], ["skip = 0"]),
        (["--seed", "-1"], ["seed = -1"]),
        (["--device", "gpu"], ["device = 'gpu'"]),
        (["--radii", "0,a"], ["radius = 'a'"]),
        (["--num-examples", "x"], ["--num-examples", "'x'"]),
        (
            ["--method", "laplace"],
            ["method = 'laplace'", "cohen, cohen-combined, cohen-predict"],
        ),
        (["--method", "cohen_top2"], ["method = 'cohen_top2'", "cohen-top2"]),
        (
            ["--method", "lipschitz", "--model", "digits_lipschitz", "--sigma", "0.5"],
            ["method 'lipschitz' needs temperature"],
        ),
        (
            ["--method", "lipschitz", "--temperature", "4"],
            ["model = 'digits_cnn'", "no certified Lipschitz constant", "--logit-lipschitz"],
        ),
        (["--beta", "0.1"], ["--beta is not an option of method 'cohen'", "--sigma"]),
        (["--tau", "0.3"], ["--tau is not an option of method 'cohen'"]),
        (
            ["--method", "tokens", "--dataset", "listings", "--sigma", "0.25"],
            ["--sigma is not an option of method 'tokens'", "--beta"],
        ),
        (
            ["--method", "tokens", "--beta", "0.1", "--alphabet", "50"],
            ["dataset = 'digits'", "does not fit method 'tokens'"],
        ),
        (
            ["--method", "hybrid", "--beta", "0.1", "--alphabet", "50"],
            ["dataset = 'digits'", "does not fit method 'hybrid'"],
        ),
        (
            ["--method", "hybrid-fields", "--model", "tabular_mlp", "--sigma", "0.5"],
            ["dataset = 'digits'", "does not fit method 'hybrid-fields'"],
        ),
        (
            ["--method", "hybrid", "--dataset", "fair", "--model", "tabular_mlp"],
            ["dataset = 'fair' (tabular examples)", "does not fit method 'hybrid'", "text_image"],
        ),
        (
            ["--method", "hybrid-sequential", "--dataset", "fair", "--model", "tabular_mlp"],
            ["dataset = 'fair'", "does not fit method 'hybrid-sequential'"],
        ),
        (
            ["--method", "hybrid-fields", "--dataset", "listings", "--model", "tabular_mlp"],
            ["dataset = 'listings'", "does not fit method 'hybrid-fields'", "tabular"],
        ),
        (["--field-beta", "0.1"], ["--field-beta is not an option of method 'cohen'"]),
        (
            ["--dataset", "listings"],
            ["dataset = 'listings'", "does not fit method 'cohen'", "valid: an image dataset"],
        ),
        (["--top2", "--method", "tokens"], ["--top2 with --method tokens"]),
        (["--precision", "fp8"], ["precision = 'fp8'", "fp32, bf16, fp16"]),
        (["--backend", "spark"], ["backend = 'spark'", "local, ray"]),
        (["--workers", "2"], ["--workers", "--backend ray"]),
        (["-n", "10000000000000"], ["10,000,000,000,100", "--allow-large"]),
        (["--model-sigma", "0.3"], ["model_sigma = 0.3", "0.25, 0.5, 1.0"]),
        (["--examples-per-batch", "0"], ["examples_per_batch = 0"]),
    ],
)
def test_certify_bad_input_fails_fast(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert_one_line_error(invoke("certify", "--output", str(out), *args), *needles)
    assert not out.exists()


def test_certify_refuses_other_config(tmp_path: Path, files: tuple[Path, Path]) -> None:
    before = files[0].read_bytes()
    result = invoke("certify", "--output", str(files[0]), "--no-progress")
    assert_one_line_error(result, "h" * 64, str(files[0]), "refusing to append", code=1)
    assert files[0].read_bytes() == before


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("smoothcert ")


# ------------------------------------------------------------------ train


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--sigma", "0"], "sigma = 0.0"),
        (["--epochs", "0"], "epochs = 0"),
        (["--threads", "0"], "threads = 0"),
    ],
)
def test_train_bad_input_fails_before_training(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "weights"
    assert_one_line_error(invoke("train", "--out-dir", str(out), *args), needle)
    assert not out.exists()


# ------------------------------------------------------------------ certify: a real run


def _bundled_model_available() -> bool:
    try:
        from smoothcert.models import load_model

        load_model("digits_cnn", sigma=0.25)
    except Exception:  # noqa: BLE001 - missing assets
        return False
    return True


@pytest.mark.skipif(not _bundled_model_available(), reason="bundled digits_cnn not available")
def test_certify_small_run_writes_results_table_and_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import smoothcert.cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(smoothcert.cli, "LOG_EVERY_S", 0.0)  # a progress line per example
    args = ["certify", "--n0", "10", "-n", "100", "--alpha", "0.01", "--num-examples", "3"]
    result = invoke(*args, "--skip", "7", "--radii", "0,0.1")
    assert result.exit_code == 0, result.output
    # default output path: the config differs from the default, so it is named by model,
    # method and a hash prefix
    from smoothcert.runner import RunConfig

    config = RunConfig(params={"sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.01})
    (out,) = (tmp_path / "results").glob("*.jsonl")
    assert out.name == f"digits_cnn_cohen_{config.config_hash()[:8]}.jsonl"
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert result.stdout.splitlines()[0] == f"| radius | {out.stem} |"
    assert "| examples | 3 |" in result.stdout
    assert "certify 3/3" in result.stderr
    assert f"results: {out.relative_to(tmp_path)}\n" in result.stderr
    assert "Traceback" not in result.output and "\n\n" not in result.stderr
    from smoothcert.data import load_dataset
    from smoothcert.reports import load_results

    loaded = load_results(out)
    expected = load_dataset("digits", "test").indices[[0, 7, 14]].tolist()
    assert [r["index"] for r in loaded.records] == expected
    assert loaded.header["config_hash"] == config.config_hash()
    # the same command again resumes with nothing to do
    again = invoke(*args, "--skip", "7", "--radii", "0,0.1")
    assert again.exit_code == 0 and "resuming: 3 of 3" in again.stderr

    # recertify with the original settings reproduces the records exactly
    same = tmp_path / "same.jsonl"
    redo = invoke("recertify", str(out), "--output", str(same))
    assert redo.exit_code == 0, redo.output
    assert load_results(same).records == loaded.records
    # the top-two certificate at another alpha, from the same evidence
    top2 = tmp_path / "top2.jsonl"
    redo = invoke("recertify", str(out), "--output", str(top2), "--top2", "--alpha", "0.02")
    assert redo.exit_code == 0, redo.output
    records = load_results(top2).records
    assert [r["method"] for r in records] == ["cohen-top2"] * 3
    assert all(r["alpha"] == 0.02 and r["params"]["alpha"] == 0.02 for r in records)
    assert [r["evidence"]["stages"][1]["counts"] for r in records] == [
        r["evidence"]["stages"][1]["counts"] for r in loaded.records
    ]
    assert_one_line_error(
        invoke(
            "recertify", str(out), "--output", str(top2), "--bound", "betting", "--combiner", "cpm"
        ),
        "bound = 'betting'",
    )


# ------------------------------------------------------------------ attack


def test_attack_writes_results_and_report_compares_with_certified(tmp_path: Path) -> None:
    from smoothcert.reports import load_results

    att = tmp_path / "att.jsonl"
    common = ["--num-examples", "3", "--sigma", "0.25"]
    args = ["attack", *common, "--radii", "0.25,0.5", "--steps", "3", "--noise-samples", "2"]
    result = invoke(*args, "--eval-n", "200", "--output", str(att))
    assert result.exit_code == 0, result.output
    records = load_results(att).records
    assert [r["method"] for r in records] == ["attack-l2"] * 3
    assert {r["claim"] for r in records} == {"empirical"}
    assert records[0]["params"]["radii"] == [0.25, 0.5] and records[0]["params"]["steps"] == 3
    assert "| 0.5 | " in result.stdout and att.with_name("att_attack.png").exists()
    cert = tmp_path / "cert.jsonl"
    done = invoke(
        "certify", *common, "-n", "500", "--no-progress", "--no-plot", "--output", str(cert)
    )
    assert done.exit_code == 0, done.output
    plot = tmp_path / "cmp.png"
    shown = invoke("report", str(cert), str(att), "--plot", str(plot))
    assert shown.exit_code == 0, shown.output
    assert "| radius | cert certified | att empirical | gap att - cert |" in shown.stdout
    assert tmp_path.joinpath("cmp_attack.png").read_bytes()[:8] == PNG_MAGIC
    # the same command resumes with nothing to do
    again = invoke(*args, "--eval-n", "200", "--output", str(att))
    assert again.exit_code == 0 and load_results(att).records == records


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--radii", "0.5,x"], ["radius = 'x'", "comma-separated"]),
        (["--radii", "0.5,0.25"], ["radii = (0.5, 0.25)", "strictly increasing"]),
        (["--steps", "0"], ["steps = 0"]),
        (["--score", "margin"], ["score = 'margin'"]),
        (["--dataset", "listings"], ["does not fit method 'attack-l2'"]),
    ],
)
def test_attack_bad_input_fails_fast(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    assert_one_line_error(invoke("attack", *args, "--output", str(tmp_path / "a.jsonl")), *needles)
    assert not (tmp_path / "a.jsonl").exists()


def test_attack_hybrid_on_listings_writes_results_and_a_dr_table(tmp_path: Path) -> None:
    from smoothcert.reports import load_results

    out = tmp_path / "h.jsonl"
    args = ["attack", "--method", "hybrid", "--model", "listing_filter", "--dataset", "listings"]
    args += ["--sigma", "0.25", "--target", "1", "--tau", "0.5", "--num-examples", "2"]
    args += ["--d-max", "1", "--radii", "0,0.5", "--steps", "2", "--noise-samples", "4"]
    result = invoke(*args, "--candidates", "4", "--eval-n", "200", "--output", str(out))
    assert result.exit_code == 0, result.output
    records = load_results(out).records
    assert [r["method"] for r in records] == ["attack-hybrid"] * 2
    assert records[0]["params"]["threat"] == "given" and records[0]["params"]["alphabet"] == 30522
    assert "| d | r | h still flagged | h success |" in result.stdout
    assert "| 1 | 0.5 | " in result.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--method", "laplace"], ["method = 'laplace'", "l2, hybrid, fields"]),
        (
            ["--method", "hybrid", "--model", "tabular_mlp", "--dataset", "fair"],
            ["dataset = 'fair'", "does not fit method 'attack-hybrid'"],
        ),
        (
            ["--method", "fields", "--model", "tabular_mlp", "--dataset", "listings"],
            ["dataset = 'listings'", "does not fit method 'attack-fields'", "tabular"],
        ),
        (
            ["--method", "fields", "--model", "tabular_mlp", "--dataset", "fair", "--beta", "0.1"],
            ["--beta is not an option of method 'attack-fields'"],
        ),
        (
            ["--method", "fields", "--model", "tabular_mlp", "--dataset", "fair", "--d-max", "6"],
            ["attack_d_max = 6", "5"],
        ),
        (
            ["--method", "hybrid", "--model", "listing_filter", "--dataset", "listings"],
            ["target = None is invalid for the hybrid attack"],
        ),
        (["--beta", "0.1"], ["--beta is not an option of method 'attack-l2'"]),
    ],
)
def test_attack_method_errors(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    assert_one_line_error(invoke("attack", *args, "--output", str(tmp_path / "a.jsonl")), *needles)
