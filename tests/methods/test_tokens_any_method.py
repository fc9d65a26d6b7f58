"""Token and hybrid methods with the any-token attacker: records, defaults, old files, errors."""

import json

import numpy as np
import pytest
import torch

from smoothcert.certificates import hybrid_radius_curve, token_lower_bound
from smoothcert.decisions.hybrid import HybridParams, decide_hybrid
from smoothcert.decisions.tokens import TokenFacts, TokenParams, decide_tokens
from smoothcert.errors import InvalidParameterError
from smoothcert.methods import hybrid, tokens
from smoothcert.methods._tokens_common import default_attacker
from smoothcert.records import CertifyResult, Evidence, StageEvidence


class Embed(torch.nn.Module):
    """A small real text classifier over a 100-token vocabulary (fixed random weights)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randn(100, 4, generator=g))
        self.out = torch.nn.Parameter(torch.randn(4, 2, generator=g))

    def forward(self, toks, image=None):
        score = self.emb[toks].mean(dim=1) @ self.out
        if image is not None:
            score = score + image.flatten(1).mean(dim=1, keepdim=True) * 0.0
        return score + torch.tensor([0.0, 3.0])


class Exploding(torch.nn.Module):
    def forward(self, *args):
        raise AssertionError("the model must not be called")


KW = {"beta": 0.3, "alphabet": 8, "n0": 50, "n": 2000, "alpha": 0.01, "batch_size": 500}


def test_any_token_record_states_the_threat_and_recertifies():
    toks = torch.tensor([3, 50, 2, 7])  # 50 lies outside the alphabet 0..7
    res = tokens.certify(Embed().eval(), toks, attacker="any", seed=1, **KW)
    assert res.params.attacker == "any"
    assert res.details.attacker == "any"
    assert res.evidence.facts.clean_outside == 1
    assert res.to_dict()["params"]["attacker"] == "any"
    again = CertifyResult.from_json(res.to_json())
    assert again == res
    assert decide_tokens(again.evidence, again.params) == res
    # the radius is the any-token certificate with the clean out-of-alphabet count
    kw = {"beta": 0.3, "vocab_size": 8, "attacker": "any", "clean_outside": 1}
    d = int(res.radius)
    if not res.abstained:
        assert token_lower_bound(res.p_lower, d=d, **kw) > 0.5
    if d < 4:
        assert token_lower_bound(res.p_lower, d=d + 1, **kw) <= 0.5


def test_default_threat_rule():
    assert default_attacker(None, 8, 100) == "any"
    assert default_attacker(None, 100, 100) == "alphabet"
    assert default_attacker(None, 8, None) == "alphabet"
    assert default_attacker("alphabet", 8, 100) == "alphabet"
    toks = torch.tensor([3, 5, 2, 7])
    res = tokens.certify(Embed().eval(), toks, model_vocab_size=100, seed=1, **KW)
    assert res.params.attacker == "any"
    res = tokens.certify(Embed().eval(), toks, seed=1, **KW)
    assert res.params.attacker == "alphabet" and res.details.attacker == "alphabet"
    assert "attacker" not in res.to_dict()["params"]  # default left out (old files, hashes)


def test_old_record_without_the_field_recertifies_with_todays_claim():
    toks = torch.tensor([3, 5, 2, 7])
    res = tokens.certify(Embed().eval(), toks, seed=2, **KW)
    data = json.loads(res.to_json())
    # the defaults are not serialised: a record written before the fields existed has
    # exactly this shape, and re-deciding it reproduces it key for key (what files check)
    assert "attacker" not in data["details"] and "attacker" not in data["params"]
    assert "clean_outside" not in data["evidence"]["facts"]
    old = CertifyResult.from_dict(data)
    assert old.params.attacker == "alphabet"
    assert old.evidence.facts.clean_outside == 0
    redone = decide_tokens(old.evidence, old.params)
    assert redone.radius == res.radius and redone.details.attacker == "alphabet"
    assert json.loads(redone.to_json()) == {**data, "seconds": redone.seconds}


def test_run_config_hash_of_default_params_has_no_attacker():
    from smoothcert.runner.config import RunConfig

    base = {"beta": 0.3, "alphabet": 30522, "n0": 10, "n": 100, "alpha": 0.01}
    cfg = RunConfig(method="tokens", params=base, dataset="listings", model="listing_filter")
    assert "attacker" not in cfg.canonical_json()
    same = RunConfig(
        method="tokens",
        params={**base, "attacker": "alphabet"},
        dataset="listings",
        model="listing_filter",
    )
    assert same.config_hash() == cfg.config_hash()
    other = RunConfig(
        method="tokens",
        params={**base, "attacker": "any"},
        dataset="listings",
        model="listing_filter",
    )
    assert '"attacker":"any"' in other.canonical_json()
    assert other.config_hash() != cfg.config_hash()
    assert other.method_params().attacker == "any"


@pytest.mark.parametrize(
    ("kwargs", "toks", "match"),
    [
        ({}, [3, 50, 2], r"token id 50 at eligible position 1 is invalid"),
        ({"attacker": "any", "beta": 0.95}, [3, 50, 2], r"beta = 0.95 is invalid with 1 clean"),
        ({"attacker": "some"}, [3, 5, 2], r"attacker = 'some' is invalid"),
        ({"attacker": "any"}, [3, 5, 2], None),
    ],
)
def test_bad_input_rejected_before_any_model_call(kwargs, toks, match):
    from smoothcert.methods import threats

    args = {**KW, **kwargs}
    if match is None:  # d beyond the editable positions
        args["threat"] = threats.anywhere(d_max=4)
        match = r"d_max = 4 is invalid; valid range: 0 <= d_max <= D = 3"
    with pytest.raises(InvalidParameterError, match=match):
        tokens.certify(Exploding().eval(), torch.tensor(toks), **args)
    with pytest.raises(InvalidParameterError, match=match):
        hybrid.certify(Exploding().eval(), torch.tensor(toks), torch.zeros(4), sigma=0.5, **args)


def test_params_and_facts_reject_inconsistent_values():
    with pytest.raises(InvalidParameterError, match="attacker = 'x' is invalid"):
        TokenParams(beta=0.3, alphabet=8, n0=1, n=10, alpha=0.01, attacker="x")
    with pytest.raises(InvalidParameterError, match="clean_outside = 3 is invalid"):
        TokenFacts(
            num_classes=2,
            length=3,
            num_eligible=2,
            d_max=2,
            sampling_tv_bound=0.0,
            clean_outside=3,
        )
    ev = Evidence(
        (
            StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
            StageEvidence("estimation", n=100, alpha=0.01, counts=(0, 100)),
        ),
        TokenFacts(
            num_classes=2, length=3, num_eligible=3, d_max=3, sampling_tv_bound=0.0, clean_outside=1
        ),
    )
    params = TokenParams(beta=0.3, alphabet=8, n0=10, n=100, alpha=0.01)
    with pytest.raises(InvalidParameterError, match="clean_outside = 1 is invalid for attacker"):
        decide_tokens(ev, params)


def test_hybrid_any_curve_below_alphabet_curve_and_equal_to_the_certificate():
    facts = TokenFacts(num_classes=2, length=4, num_eligible=4, d_max=4, sampling_tv_bound=0.0)
    ev = Evidence(
        (
            StageEvidence("selection", n=100, alpha=0.0, counts=(0, 100)),
            StageEvidence("estimation", n=20000, alpha=0.001, counts=(3, 19997)),
        ),
        facts,
    )
    base = {
        "sigma": 0.5,
        "beta": 0.6,
        "alphabet": 20,
        "n0": 100,
        "n": 20000,
        "alpha": 0.001,
        "tau": 0.5,
    }
    alpha_res = decide_hybrid(ev, HybridParams(**base))
    any_res = decide_hybrid(ev, HybridParams(**base, attacker="any"))
    assert any_res.details.attacker == "any" and alpha_res.details.attacker == "alphabet"
    assert np.all(np.array(any_res.radius_curve) <= np.array(alpha_res.radius_curve))
    direct = hybrid_radius_curve(
        any_res.p_lower, d_max=4, sigma=0.5, beta=0.6, vocab_size=20, attacker="any"
    )
    d_cert = any_res.details.d_certified
    assert d_cert is not None
    np.testing.assert_allclose(any_res.radius_curve[: d_cert + 1], direct[: d_cert + 1])


def test_hybrid_method_samples_out_of_alphabet_tokens():
    toks = torch.tensor([3, 50, 2])
    res = hybrid.certify(
        Embed().eval(), toks, torch.zeros(4), sigma=0.5, attacker="any", seed=3, **KW
    )
    assert res.params.attacker == "any" and res.evidence.facts.clean_outside == 1
    assert CertifyResult.from_json(res.to_json()) == res


def _cli_config(method, **options):
    from smoothcert.cli import build_run_config

    run_fields = {"model": "listing_filter", "dataset": "listings", "split": "test"}
    return build_run_config(method=method, options=options, run_fields=run_fields)


@pytest.mark.parametrize("method", ["tokens", "hybrid", "hybrid-sequential"])
def test_cli_default_threat_follows_the_alphabet_size(method):
    extra = {"targets": ((1, 0.1),), "max_samples": 1000} if method == "hybrid-sequential" else {}
    whole = _cli_config(method, beta=0.3, **extra)
    assert whole.method_params().attacker == "alphabet"  # listings: the whole 30522 vocabulary
    assert "attacker" not in whole.params
    small = _cli_config(method, beta=0.3, alphabet=5000, **extra)
    assert small.method_params().attacker == "any"
    chosen = _cli_config(method, beta=0.3, alphabet=5000, attacker="alphabet", **extra)
    assert chosen.method_params().attacker == "alphabet"
    with pytest.raises(InvalidParameterError, match="attacker = 'some'"):
        _cli_config(method, beta=0.3, attacker="some", **extra)


def test_sequential_hybrid_states_the_threat_and_uses_the_any_bound():
    from smoothcert.certificates import hybrid_lower_bound

    toks = torch.tensor([3, 50, 2])
    res = hybrid.certify_sequential(
        Embed().eval(),
        toks,
        torch.zeros(4),
        sigma=0.5,
        beta=0.3,
        alphabet=8,
        alpha=0.01,
        max_samples=2000,
        target_points=[(1, 0.1)],
        n0=50,
        attacker="any",
        seed=4,
        batch_size=500,
    )
    assert res.params.attacker == "any" and res.details.attacker == "any"
    assert res.evidence.facts.clean_outside == 1
    kw = {"sigma": 0.5, "beta": 0.3, "vocab_size": 8, "attacker": "any", "clean_outside": 1}
    bound = float(hybrid_lower_bound(res.p_lower, d=1, r=0.1, **kw))
    assert (tuple(res.details.targets_certified) == ((1, 0.1),)) == (bound > 0.5)
