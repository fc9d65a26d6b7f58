"""attack-fields against an additive model whose smoothed probability and worst case are
exact (tests/fields_oracle.py): the attack reaches the worst case, never succeeds inside the
region hybrid-fields certifies, and does succeed where the worst case is well below 1/2."""

from __future__ import annotations

import pytest
import torch

from fields_oracle import AdditiveModel, W, exact_smoothed_p1, worst_case_p1
from smoothcert.decisions.attack_fields import FieldsAttackParams
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.attack_fields import attack_fields, attack_row
from smoothcert.methods.fields import certify
from smoothcert.noise.fields import FieldsNoise

VOCAB, BETAS, SIGMA = (2, 3, 4), (0.2, 0.3, 0.4), 0.5
TABLES = [[0.0, 1.2], [0.0, 0.4, -0.3], [0.1, 0.0, 0.6, -0.2]]
TOKENS, X = (1, 1, 2), torch.tensor([0.5, -0.3, 0.4])


@pytest.mark.parametrize(("d", "r"), [(1, 0.0), (1, 0.3), (2, 0.0), (2, 0.8), (3, 0.8)])
def test_attack_reaches_the_exact_worst_case(d: int, r: float) -> None:
    # Steep logits make the soft score the attack follows close to the hard vote; 1,024
    # shared draws separate the candidates (at d = 2 the best pair beats the runner-up,
    # which changes the field with the larger table drop but more noise, by 0.013).
    model = AdditiveModel(TABLES, scale=30.0).eval()
    params = FieldsAttackParams(
        field_vocab_sizes=VOCAB, field_betas=BETAS, sigma=SIGMA, noise_samples=1024
    )
    noise = FieldsNoise(vocab_sizes=VOCAB, betas=BETAS, sigma=SIGMA)
    tokens, cont = attack_row(
        model,
        noise,
        torch.tensor(TOKENS),
        X,
        target=1,
        d=d,
        radius=r,
        params=params,
        generator=torch.Generator().manual_seed(0),
    )
    changed = sum(int(a != b) for a, b in zip(tokens.tolist(), TOKENS, strict=True))
    assert changed <= d and float((cont - X).norm()) <= r * (1 + 1e-5)
    worst, worst_tokens = worst_case_p1(model, TOKENS, X, VOCAB, BETAS, SIGMA, d=d, r=r)
    reached = exact_smoothed_p1(model, tokens.tolist(), cont, VOCAB, BETAS, SIGMA)
    assert reached >= worst - 1e-6  # inside the threat: never below the true minimum
    assert reached <= worst + 1e-4, (tokens.tolist(), worst_tokens, reached, worst)
    assert tuple(tokens.tolist()) == worst_tokens
    if r > 0:  # the worst continuous move is -r w / ||w||
        assert torch.allclose(cont - X, -r * W / W.norm(), atol=1e-4)


def test_attack_never_succeeds_inside_the_certified_region_and_does_outside() -> None:
    model = AdditiveModel(TABLES).eval()
    res = certify(
        model,
        torch.tensor(TOKENS),
        X,
        vocab_sizes=VOCAB,
        betas=BETAS,
        sigma=SIGMA,
        n0=100,
        n=20_000,
        alpha=0.001,
        seed=2,
    )
    assert res.prediction == 1 and res.details.d_certified >= 2  # something to attack
    for d, r_cert in enumerate(res.radius_curve):
        if r_cert <= 0:
            continue
        out = attack_fields(
            model,
            torch.tensor(TOKENS),
            X,
            vocab_sizes=VOCAB,
            betas=BETAS,
            sigma=SIGMA,
            radii=(0.0, 0.99 * r_cert),
            attack_d_max=d,
            noise_samples=256,
            eval_n=2000,
            seed=d,
        )
        assert out.prediction == 1
        assert not any(out.details.flipped), (d, r_cert, out.details)
    # outside, where the exact worst case is well below 1/2, the attack finds a change
    outside = [(3, 1.5), (2, 2.5)]
    for d, r in outside:
        assert worst_case_p1(model, TOKENS, X, VOCAB, BETAS, SIGMA, d=d, r=r)[0] < 0.4
    out = attack_fields(
        model,
        torch.tensor(TOKENS),
        X,
        vocab_sizes=VOCAB,
        betas=BETAS,
        sigma=SIGMA,
        radii=(0.0, 1.5, 2.5),
        attack_d_max=3,
        noise_samples=256,
        eval_n=2000,
        seed=0,
    )
    flips = dict(
        zip(
            zip(out.details.d_values, out.details.r_values, strict=True),
            out.details.flipped,
            strict=True,
        )
    )
    assert all(flips[p] for p in outside)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"attack_d_max": 4}, r"attack_d_max = 4 .*3"),
        ({"radii": (0.5, 0.25)}, r"radii = \(0.5, 0.25\) is invalid"),
        ({"radii": (-1.0,)}, r"radii = \(-1.0,\) is invalid"),
        ({"radii": (0.0,), "attack_d_max": 0}, r"nothing to attack"),
        ({"rounds": 0}, r"rounds = 0"),
        ({"betas": (0.2, 0.3)}, r"3 field vocab sizes and 2 field betas"),
        ({"sigma": 0.0}, r"sigma = 0.0"),
    ],
)
def test_bad_parameters_are_rejected_before_sampling(kw: dict, needle: str) -> None:
    args = {"vocab_sizes": VOCAB, "betas": BETAS, "sigma": SIGMA, "radii": (0.0, 0.5)}
    args.update(kw)
    with pytest.raises(InvalidParameterError, match=needle):
        attack_fields(AdditiveModel(TABLES).eval(), torch.tensor(TOKENS), X, **args)


@pytest.mark.parametrize(
    ("tokens", "cont", "needle"),
    [
        ([1, 1, 4], X, r"category id 4 of field 2 .*0 <= id <= 3"),
        ([1, 1], X, r"tokens.shape = \(2,\) is invalid"),
        (TOKENS, [0.0, 0.0, 0.0], r"continuous of type list is invalid"),
    ],
)
def test_bad_rows_are_rejected_before_sampling(tokens, cont, needle: str) -> None:
    with pytest.raises(InvalidParameterError, match=needle):
        attack_fields(
            AdditiveModel(TABLES).eval(),
            torch.tensor(tokens),
            cont,
            vocab_sizes=VOCAB,
            betas=BETAS,
            sigma=SIGMA,
        )


def test_cli_attack_on_fair_reports_certified_next_to_attacked(tmp_path) -> None:
    from typer.testing import CliRunner

    from smoothcert.cli import app
    from smoothcert.reports import load_results

    runner = CliRunner()
    cert, att = tmp_path / "cert.jsonl", tmp_path / "att.jsonl"
    common = ["--dataset", "fair", "--model", "tabular_mlp", "--sigma", "0.5"]
    common += ["--num-examples", "2"]
    args = ["certify", "--method", "hybrid-fields", *common, "--n0", "20", "-n", "300"]
    result = runner.invoke(app, [*args, "--alpha", "0.01", "--output", str(cert)])
    assert result.exit_code == 0, result.output
    args = ["attack", "--method", "fields", *common, "--radii", "0,0.5", "--d-max", "1"]
    args += ["--steps", "2", "--noise-samples", "4", "--eval-n", "100", "--rounds", "1"]
    result = runner.invoke(app, [*args, "--output", str(att)])
    assert result.exit_code == 0, result.output
    records = load_results(att).records
    assert [r["method"] for r in records] == ["attack-fields"] * 2
    assert records[0]["params"]["field_betas"] == [0.3, 0.35, 0.45, 0.45, 0.45]
    assert records[0]["details"]["d_values"] == [0, 1, 1]
    again = runner.invoke(app, [*args, "--output", str(att)])  # resumes: nothing to do
    assert again.exit_code == 0 and len(load_results(att).records) == 2
    result = runner.invoke(app, ["report", str(cert), str(att)])
    assert result.exit_code == 0, result.output
    assert "| d | r | cert certified | att attacked | att success |" in result.stdout
    assert "| 0 | 0 | " in result.stdout and "| 1 | 0.5 | " in result.stdout
