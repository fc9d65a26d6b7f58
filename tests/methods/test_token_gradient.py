"""GCG-style token candidates for attack-hybrid: the embedding hook and the gradient ranking.

Oracle: a bag-of-embeddings model (class 1's logit is the sum of per-token weights plus the
image's mean) under token + image noise. The smoothed score's best single substitution is
known exactly: the position holding the largest weight, rewritten to the alphabet token of
smallest weight. (Proof: the kernel acts alike at every position, so the noisy logit after
that edit is stochastically smaller than after any other edit -- its multiset of clean
weights is dominated -- and the score is increasing in the logit.) The gradient ranking is
first order, so the test keeps the clean logit near 0, where the score is not saturated.
"""

from __future__ import annotations

import pytest
import torch

from smoothcert.decisions.attack_hybrid import HybridAttackParams
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.attack_hybrid import attack_hybrid, attack_pair
from smoothcert.methods.token_gradient import gradient_candidates, has_embedding_hook
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.product import TokenImageNoise
from smoothcert.noise.tokens import TokenSubstitutionNoise
from smoothcert.runner.config import RunConfig

V = 40
WEIGHTS = torch.linspace(-1.0, 1.0, V)  # token t's weight; the smallest is token 0
TOKENS = torch.tensor([20, 25, 39, 22, 10, 30])  # weights 0.03, 0.28, 1.0, 0.13, -0.49, 0.54
OFFSET = float(WEIGHTS[TOKENS].sum())  # the clean logit is near 0: not saturated


class Bag(torch.nn.Module):
    """Class 1's logit: sum_p w[token_p] - OFFSET + mean(image) - 0.5; has the hook."""

    def token_embedding_matrix(self) -> torch.Tensor:
        return WEIGHTS[:, None]

    def forward_embeddings(self, embeds: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        z = embeds.sum(dim=(1, 2)) - OFFSET + images.flatten(1).mean(1) - 0.5
        return torch.stack([-z, z], dim=1)

    def forward(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.forward_embeddings(self.token_embedding_matrix()[tokens], images)


class NoHook(torch.nn.Module):
    def forward(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return Bag()(tokens, images)


IMAGE = torch.full((4,), 0.5)
ALPHABET = torch.arange(V)


def kernel() -> TokenImageNoise:
    return TokenImageNoise(TokenSubstitutionNoise(beta=0.3, alphabet=V), GaussianNoise(0.25))


def best_substitution(eligible: list[int]) -> tuple[int, int]:
    pos = max(eligible, key=lambda p: float(WEIGHTS[TOKENS[p]]))
    return pos, int(torch.argmin(WEIGHTS))


def test_the_best_substitution_is_ranked_in_the_top_k() -> None:
    eligible = [0, 1, 2, 3, 4, 5]
    bound = kernel().bind(TOKENS, IMAGE, torch.tensor(eligible))
    top = gradient_candidates(
        Bag(),
        bound,
        TOKENS,
        eligible,
        ALPHABET,
        target=1,
        k=3,
        noise_samples=64,
        generator=torch.Generator().manual_seed(0),
    )
    assert len(top) == 3 and top[0] == best_substitution(eligible)
    assert all(int(TOKENS[p]) != t for p, t in top)  # never the token already there


def test_gradient_candidates_find_the_best_edit_where_one_random_candidate_rarely_does() -> None:
    eligible = torch.tensor([0, 2, 4])
    hits = {"gradient": 0, "random": 0}
    for ranking in hits:
        params = HybridAttackParams(
            sigma=0.25,
            beta=0.3,
            alphabet=V,
            n0=0,
            n=100,
            alpha=0.01,
            target=1,
            tau=0.5,
            radii=(0.0,),
            attack_d_max=1,
            noise_samples=32,
            candidates=1,
            candidate_ranking=ranking,
        )
        for seed in range(10):
            tokens, _ = attack_pair(
                Bag(),
                kernel(),
                TOKENS,
                IMAGE,
                eligible,
                ALPHABET,
                d=1,
                radius=0.0,
                params=params,
                generator=torch.Generator().manual_seed(seed),
            )
            pos, tok = best_substitution([0, 2, 4])
            hits[ranking] += int(tokens[pos]) == tok
    assert hits["gradient"] == 10
    assert hits["random"] <= 3  # one random pair among 3 x 39: the best with prob 1/117


def test_listing_filter_hook_is_bit_identical_to_its_forward() -> None:
    from smoothcert.models import load_model

    model = load_model("listing_filter", sigma=0.25)
    assert has_embedding_hook(model) and not has_embedding_hook(NoHook())
    tokens = torch.randint(0, 30522, (16, 24), generator=torch.Generator().manual_seed(0))
    tokens[:, :3] = torch.tensor([101, 2304, 102])
    images = torch.rand((16, 1, 14, 14), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(tokens, images)
        got = model.forward_embeddings(model.token_embedding_matrix()[tokens], images)
    assert torch.equal(expected, got)


def test_gradient_ranking_needs_the_hook_and_is_recorded_and_hashed() -> None:
    with pytest.raises(InvalidParameterError, match="candidate_ranking = 'gradient'.*hook"):
        attack_hybrid(
            NoHook().eval(),
            TOKENS,
            IMAGE,
            sigma=0.25,
            beta=0.3,
            alphabet=V,
            target=1,
            tau=0.5,
            radii=(0.0,),
            attack_d_max=1,
            candidate_ranking="gradient",
        )
    with pytest.raises(InvalidParameterError, match="candidate_ranking = 'best'"):
        HybridAttackParams(
            sigma=0.25,
            beta=0.3,
            alphabet=V,
            n0=0,
            n=100,
            alpha=0.01,
            target=1,
            tau=0.5,
            candidate_ranking="best",
        )
    res = attack_hybrid(
        Bag().eval(),
        TOKENS,
        IMAGE,
        sigma=0.25,
        beta=0.3,
        alphabet=V,
        target=1,
        tau=0.5,
        radii=(0.0, 0.25),
        attack_d_max=1,
        n=200,
        steps=2,
        noise_samples=8,
        candidates=4,
        candidate_ranking="gradient",
    )
    assert res.params.candidate_ranking == "gradient"
    assert res.params.to_dict()["candidate_ranking"] == "gradient"
    base = {
        "sigma": 0.25,
        "beta": 0.3,
        "alphabet": V,
        "n0": 0,
        "n": 100,
        "alpha": 0.01,
        "target": 1,
        "tau": 0.5,
    }
    assert "candidate_ranking" not in HybridAttackParams(**base).to_dict()  # older hashes kept

    def digest(**extra) -> str:
        return RunConfig(method="attack-hybrid", params={**base, **extra}).config_hash()

    assert digest() == digest(candidate_ranking="random") != digest(candidate_ranking="gradient")


def test_cli_hybrid_attack_with_gradient_candidates_on_listings(tmp_path) -> None:
    from typer.testing import CliRunner

    from smoothcert.cli import app
    from smoothcert.reports import load_results

    out = tmp_path / "g.jsonl"
    args = ["attack", "--method", "hybrid", "--model", "listing_filter", "--dataset", "listings"]
    args += ["--sigma", "0.25", "--target", "1", "--tau", "0.5", "--num-examples", "2"]
    args += ["--d-max", "1", "--radii", "0", "--noise-samples", "4", "--candidates", "4"]
    args += ["--candidate-ranking", "gradient", "--eval-n", "100", "--output", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = load_results(out).records
    assert [r["params"]["candidate_ranking"] for r in records] == ["gradient"] * 2
    bad = CliRunner().invoke(app, ["attack", "--candidate-ranking", "gradient"])
    assert "--candidate-ranking is not an option of method 'attack-l2'" in bad.output
