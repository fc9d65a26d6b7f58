"""Token substitution certification against exact enumeration on tiny alphabets."""

import itertools
import json

import numpy as np
import pytest
import torch

from smoothcert.certificates import token_lower_bound
from smoothcert.decisions.tokens import TokenFacts, TokenParams, bound_class, certified_tokens
from smoothcert.errors import InvalidParameterError
from smoothcert.methods import threats
from smoothcert.methods.tokens import certify
from smoothcert.records import CertifyResult, Evidence, StageEvidence
from smoothcert.stats.binomial import (
    CLOSED_FORM_MARGIN,
    clopper_pearson_lower,
    clopper_pearson_upper,
)


def brute_force_lower(p_lower, *, d, beta, vocab_size, kernel="uniform"):
    """Worst-case probability after d edits by enumerating every noisy sequence.

    The attacked positions hold u = 0 and u' = 1; for "mask" token 2 is the mask id.
    Neyman-Pearson: fill clean mass p_lower with the smallest adversarial/clean ratios
    first (the boundary set fractionally) and return its adversarial mass.
    """
    if kernel == "uniform":
        a = beta / (vocab_size - 1)
        symbols = range(vocab_size)

        def clean(z):
            return 1 - beta if z == 0 else a

        def adv(z):
            return 1 - beta if z == 1 else a
    else:
        symbols = range(3)

        def clean(z):
            return {0: 1 - beta, 1: 0.0, 2: beta}[z]

        def adv(z):
            return {0: 0.0, 1: 1 - beta, 2: beta}[z]

    cells = []
    for zs in itertools.product(symbols, repeat=d):
        c = float(np.prod([clean(z) for z in zs]))
        q = float(np.prod([adv(z) for z in zs]))
        if c > 0 or q > 0:
            cells.append((q / c if c > 0 else np.inf, c, q))
    cells.sort(key=lambda t: t[0])
    need, out = p_lower, 0.0
    for ratio, c, _q in cells:
        if need <= 0:
            break
        take = min(c, need)
        out += ratio * take if c > 0 else 0.0
        need -= take
    return out


def brute_force_radius(p_lower, *, d_max, tau, majority, **kw):
    best = -1
    for d in range(d_max + 1):
        bound = brute_force_lower(p_lower, d=d, **kw)
        ok = (bound > 0.5 and bound >= tau) if majority else bound >= tau
        if not ok:
            break
        best = d
    return best


class KeepsToken(torch.nn.Module):
    """Class 1 iff the token at position j still equals the original: P(1) = 1 - beta."""

    def __init__(self, j, original, flip=False):
        super().__init__()
        self.j, self.original, self.flip = j, original, flip

    def forward(self, toks):
        same = (toks[:, self.j] == self.original).float()
        return torch.stack([1 - same, same], dim=1)


class AnyChanged(torch.nn.Module):
    """Class 1 unless every token equals the original: P(1) = 1 - (1 - beta)^D."""

    def __init__(self, original):
        super().__init__()
        self.original = original

    def forward(self, toks):
        changed = (toks != self.original).any(dim=1).float()
        return torch.stack([1 - changed, changed], dim=1)


class Constant(torch.nn.Module):
    def __init__(self, cls=2, num_classes=3):
        super().__init__()
        self.cls, self.num_classes = cls, num_classes

    def forward(self, toks):
        out = torch.zeros(toks.shape[0], self.num_classes)
        out[:, self.cls] = 1.0
        return out


class Recorder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []
        self.eval()

    def forward(self, *args):
        self.seen.append(tuple(a.clone() for a in args))
        return self.inner(*args)


def test_brute_force_oracle_agrees_with_closed_forms():
    # d = 0: the bound is p itself; mask kernel: L = p - 1 + beta^d when positive.
    assert brute_force_lower(0.7, d=0, beta=0.3, vocab_size=3) == pytest.approx(0.7)
    assert brute_force_lower(0.99, d=2, beta=0.9, vocab_size=3, kernel="mask") == pytest.approx(
        0.99 - 1 + 0.81
    )


@pytest.mark.parametrize("kernel", ["uniform", "mask"])
def test_single_position_model_matches_closed_form_and_enumeration(kernel):
    beta, vocab = 0.2, 3
    tokens = torch.tensor([0, 1, 2, 0])
    extra = {"alphabet": vocab} if kernel == "uniform" else {"mask_id": 7}
    res = certify(
        KeepsToken(2, 2).eval(),
        tokens,
        beta=beta,
        kernel=kernel,
        n0=100,
        n=4000,
        alpha=0.001,
        seed=3,
        **extra,
    )
    assert res.prediction == 1
    assert res.p_lower <= 1 - beta  # the exact smoothed probability
    expected = brute_force_radius(
        res.p_lower, d_max=4, tau=0.5, majority=True, beta=beta, vocab_size=vocab, kernel=kernel
    )
    assert res.radius == expected
    # Editing position 2 drops P(1) to beta / (V - 1) (uniform) or 0 (mask) < 1/2: d = 1
    # is attackable, so a sound certificate cannot reach it.
    assert res.radius == 0.0


@pytest.mark.parametrize("beta, vocab", [(0.8, 3), (0.9, 4)])
def test_robust_model_certified_d_matches_enumeration(beta, vocab):
    tokens = torch.tensor([0, 0, 0, 0])
    res = certify(
        AnyChanged(0).eval(), tokens, beta=beta, alphabet=vocab, n0=100, n=20_000, alpha=0.001
    )
    p_true = 1 - (1 - beta) ** 4
    assert res.prediction == 1 and res.p_lower <= p_true
    expected = brute_force_radius(
        res.p_lower, d_max=4, tau=0.5, majority=True, beta=beta, vocab_size=vocab
    )
    assert expected >= 1
    assert res.radius == expected


def test_safety_filter_mode_fixed_target_and_tiny_tau():
    beta, vocab, tau = 0.5, 3, 0.02
    tokens = torch.tensor([0, 1, 2, 0, 1])
    model = Recorder(KeepsToken(1, 1).eval())
    res = certify(
        model,
        tokens,
        beta=beta,
        alphabet=vocab,
        n0=0,
        n=5000,
        alpha=0.001,
        tau=tau,
        target=1,
        threat=threats.last_d(4),
    )
    assert res.n0 == 0 and res.counts_selection == ()
    assert len(model.seen) == 1 + 5  # the probe, then n / batch_size batches only
    assert res.claim == "flagged" and res.params.target == 1
    assert res.p_lower <= 1 - beta
    expected = brute_force_radius(
        res.p_lower, d_max=4, tau=tau, majority=False, beta=beta, vocab_size=vocab
    )
    assert res.radius == expected >= 1
    # The real attack (editing position 1) keeps P(flag) = beta / (V - 1) = 0.25 >= tau.
    assert res.details.flag_rate == pytest.approx(0.5, abs=0.03)
    assert res.details.certified_not_flagged is False


def test_safety_filter_not_flagged_input_abstains_but_can_be_certified_benign():
    tokens = torch.tensor([0, 1, 2])
    res = certify(
        Constant(0, 2).eval(),
        tokens,
        beta=0.3,
        alphabet=3,
        n0=0,
        n=3000,
        alpha=0.001,
        tau=0.01,
        target=1,
    )
    assert res.abstained and res.prediction is None and res.radius == 0.0
    assert res.p_lower == 0.0
    assert res.details.certified_not_flagged is True


def test_constant_model_certifies_every_d_up_to_d_max():
    tokens = torch.arange(10)
    res = certify(
        Constant().eval(),
        tokens,
        beta=0.9,
        alphabet=1000,
        n0=20,
        n=2000,
        alpha=0.001,
        threat=threats.anywhere(d_max=3),
    )
    assert res.prediction == 2 and res.counts_estimation == (0, 0, 2000)
    assert (
        res.radius == 3.0
        and res.evidence.facts.d_max == 3
        and res.evidence.facts.num_eligible == 10
    )
    mask = certify(
        Constant().eval(),
        tokens,
        beta=0.95,
        kernel="mask",
        mask_id=5000,
        n0=20,
        n=2000,
        alpha=0.001,
        threat=threats.anywhere(d_max=10),
    )
    assert mask.radius == 10.0


def test_append_suffix_threat_feeds_the_suffix_to_the_model():
    model = Recorder(Constant().eval())
    res = certify(
        model,
        torch.tensor([5, 6, 7]),
        beta=0.5,
        alphabet=10,
        n0=10,
        n=30,
        alpha=0.01,
        threat=threats.append_suffix(4, placeholder_id=9),
        batch_size=40,
    )
    probe, sel, est = (s[0] for s in model.seen)
    assert probe.tolist() == [[5, 6, 7, 9, 9, 9, 9]]
    assert sel.shape == (10, 7) and est.shape == (30, 7)
    assert bool((est[:, :3] == torch.tensor([5, 6, 7])).all())
    assert bool((est[:, 3:] != 9).any())
    assert res.evidence.facts.num_eligible == 4 and res.params.threat == "append_suffix"
    assert res.evidence.facts.length == 7


def test_selection_and_estimation_are_independent_and_counts_sum():
    model = Recorder(KeepsToken(0, 0).eval())
    res = certify(
        model,
        torch.tensor([0, 1, 2, 3, 4]),
        beta=0.5,
        alphabet=5,
        n0=64,
        n=64,
        alpha=0.01,
        batch_size=64,
        seed=5,
    )
    sel, est = model.seen[1][0], model.seen[2][0]
    assert not torch.equal(sel, est)  # fresh draws, the generator is continued
    assert sum(res.counts_selection) == 64 and sum(res.counts_estimation) == 64


def test_same_seed_same_result_and_json_round_trip():
    kw = dict(beta=0.4, alphabet=6, n0=50, n=500, alpha=0.01, batch_size=128)
    model = KeepsToken(3, 3).eval()
    tokens = torch.tensor([0, 1, 2, 3, 4, 5])
    a = certify(model, tokens, seed=11, **kw)
    b = certify(model, tokens, seed=11, **kw)
    c = certify(model, tokens, seed=12, **kw)
    assert a.counts_estimation == b.counts_estimation
    assert a.counts_estimation != c.counts_estimation
    assert CertifyResult.from_json(a.to_json()) == a
    assert a.radius_unit == "tokens" and a.seed == 11
    assert a.params.beta == 0.4 and a.params.vocab_size == 6
    assert a.params.kernel == "uniform" and a.params.tau == 0.5


class Exploding(torch.nn.Module):
    def forward(self, toks):
        raise AssertionError("the model must not be called")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": 0.0}, r"beta = 0.0 is invalid; valid range: 0 < beta < 1"),
        ({"beta": 1.0}, r"beta = 1.0 is invalid"),
        ({"alphabet": 1}, r"vocab_size = 1 is invalid; valid range: .*vocab_size >= 2"),
        ({"tau": 0.0}, r"tau = 0.0 is invalid; valid range: 0 < tau < 1"),
        ({"tau": 1.2, "target": 1}, r"tau = 1.2 is invalid"),
        ({"tau": 0.1}, r"tau = 0.1 is invalid in majority mode"),
        ({"n0": 0}, r"n0 = 0 is invalid; valid range: integer n0 >= 1"),
        ({"n": 0}, r"n = 0 is invalid"),
        ({"alpha": 1.0}, r"alpha = 1.0 is invalid"),
        ({"threat": threats.anywhere(d_max=6)}, r"d_max = 6 is invalid; .*D = 5"),
        ({"threat": threats.last_d(6)}, r"num_positions = 6 is invalid"),
        ({"threat": "last"}, r"threat of type str is invalid"),
        ({"tokens": torch.tensor([0, 1, 2, 3, 12])}, r"token id 12 at eligible position 4"),
        ({"tokens": torch.tensor([0.0, 1.0])}, r"tokens.dtype = torch.float32 is invalid"),
        ({"tokens": torch.tensor([[0, 1]])}, r"tokens.shape = \(1, 2\) is invalid"),
        (
            {"threat": threats.append_suffix(2, placeholder_id=50)},
            r"placeholder_id = 50 is not in the kernel's alphabet; valid: 0 <= token id <= 9",
        ),
        ({"kernel": "mask", "mask_id": 3}, r"mask_id = 3 is inside the alphabet"),
    ],
)
def test_bad_input_rejected_before_any_model_call(kwargs, match):
    args = {"beta": 0.3, "alphabet": 10, "n0": 10, "n": 100, "alpha": 0.01}
    kwargs = dict(kwargs)
    tokens = kwargs.pop("tokens", torch.tensor([0, 1, 2, 3, 4]))
    args.update(kwargs)
    with pytest.raises(InvalidParameterError, match=match):
        certify(Exploding().eval(), tokens, **args)


def test_token_outside_alphabet_only_matters_at_eligible_positions():
    res = certify(
        Constant().eval(),
        torch.tensor([500, 1, 2]),
        beta=0.3,
        alphabet=10,
        n0=10,
        n=100,
        alpha=0.01,
        threat=threats.last_d(2),
    )
    assert not res.abstained


def test_target_outside_classes_rejected_before_sampling():
    model = Recorder(Constant().eval())
    with pytest.raises(InvalidParameterError, match=r"target = 3 is invalid; .*0 <= target <= 2"):
        certify(
            model,
            torch.tensor([0, 1]),
            beta=0.3,
            alphabet=3,
            n0=0,
            n=10,
            alpha=0.1,
            target=3,
            tau=0.1,
        )
    assert len(model.seen) == 1  # only the probe on the clean input


def test_threat_factories_validate_d_max():
    with pytest.raises(InvalidParameterError, match=r"d_max = -1 is invalid"):
        threats.anywhere(d_max=-1)
    with pytest.raises(InvalidParameterError, match=r"d_max = 4 is invalid; .*0 <= d_max <= 3"):
        threats.last_d(3, d_max=4)
    with pytest.raises(InvalidParameterError, match=r"d_max = 3 is invalid"):
        threats.positions([0, 2], d_max=3)
    with pytest.raises(InvalidParameterError, match=r"eligible mask length = 3 is invalid"):
        threats.positions(torch.tensor([True, False, True])).apply(torch.arange(4))
    with pytest.raises(InvalidParameterError, match=r"eligible position 4 is invalid"):
        threats.positions([0, 4]).apply(torch.arange(4))
    applied = threats.positions(torch.tensor([True, False, True])).apply(torch.arange(3))
    assert applied.eligible.tolist() == [0, 2] and applied.d_max == 2


class SwitchesAfter(torch.nn.Module):
    """Stateful: after the clean probe, class 0 for the first ``first`` samples, then 1.

    Choosing the class from the estimation counts would pick class 1 (and certify it);
    choosing from the n0 selection samples picks class 0, which the estimation samples
    never vote for.
    """

    def __init__(self, first):
        super().__init__()
        self.first, self.seen = first, None

    def forward(self, toks, *rest):
        b = toks.shape[0]
        out = torch.zeros(b, 2)
        if self.seen is None:  # the clean probe
            self.seen = 0
            out[:, 1] = 1.0
            return out
        cls = (torch.arange(self.seen, self.seen + b) >= self.first).long()
        out[torch.arange(b), cls] = 1.0
        self.seen += b
        return out


def test_class_is_chosen_from_the_selection_samples_only():
    res = certify(
        SwitchesAfter(100).eval(),
        torch.tensor([0, 1, 2, 3]),
        beta=0.3,
        alphabet=5,
        n0=100,
        n=1000,
        alpha=0.01,
        batch_size=64,  # batches straddle the switch
    )
    assert res.counts_selection == (100, 0) and res.counts_estimation == (0, 1000)
    assert int(np.argmax(res.counts_selection)) == 0
    assert res.abstained and res.prediction is None and res.radius == 0.0
    assert res.p_lower == 0.0


def _never_flags():
    return Constant(0, 2).eval()


def test_p_lower_is_clopper_pearson_minus_the_tv_bound():
    """Direction and size of the kernel correction (V - 1 = 30521: non-zero TV bound)."""
    vocab, length, n, alpha = 30_522, 10, 2000, 0.001
    res = certify(
        Constant(1, 2).eval(),
        torch.arange(length),
        beta=0.9,
        alphabet=vocab,
        n0=20,
        n=n,
        alpha=alpha,
    )
    tv = length * ((vocab - 1) * 2.0**-63)  # beta = 0.9 lies on the 2**-62 grid
    assert res.evidence.facts.sampling_tv_bound == pytest.approx(tv, rel=1e-12) and tv > 0
    p_cp = res.details.p_lower_cp
    assert (
        p_cp
        == float(clopper_pearson_lower(n, n, alpha=alpha))
        == pytest.approx((alpha * (1 - CLOSED_FORM_MARGIN)) ** (1 / n), rel=1e-12)
    )
    assert res.p_lower == max(0.0, p_cp - res.evidence.facts.sampling_tv_bound)
    assert res.p_lower < p_cp


@pytest.mark.parametrize("offset", [-2.0, -0.5, 0.0, 0.5, 2.0])
def test_certified_not_flagged_adds_the_tv_bound_to_the_upper_bound(offset):
    """certified_not_flagged iff p_upper + tv < tau, probed around the boundary."""
    vocab, length, n, alpha = 30_522, 10, 3000, 0.001
    tv = length * ((vocab - 1) * 2.0**-63)
    p_upper = float(clopper_pearson_upper(0, n, alpha=alpha))  # the model never flags
    tau = p_upper + tv + offset * tv
    res = certify(
        _never_flags(),
        torch.arange(length),
        beta=0.5,
        alphabet=vocab,
        n0=0,
        n=n,
        alpha=alpha,
        tau=tau,
        target=1,
    )
    assert res.details.target_p_upper == p_upper
    tv_rec = res.evidence.facts.sampling_tv_bound
    assert tv_rec == pytest.approx(tv, rel=1e-12)
    assert res.details.certified_not_flagged is (p_upper + tv_rec < tau)
    assert res.details.certified_not_flagged is (offset > 0)
    assert res.p_lower == 0.0 and res.abstained


def _evidence(estimation, selection=None, *, tv=0.0):
    stages = []
    if selection is not None:
        stages.append(StageEvidence("selection", n=sum(selection), alpha=0.0, counts=selection))
    stages.append(StageEvidence("estimation", n=sum(estimation), alpha=0.0, counts=estimation))
    facts = TokenFacts(
        num_classes=len(estimation), length=4, num_eligible=4, d_max=4, sampling_tv_bound=tv
    )
    return Evidence(tuple(stages), facts, seed=0)


def _params(**kw):
    base = dict(beta=0.3, alphabet=5, n0=0, n=1000, alpha=0.01)
    return TokenParams(**{**base, **kw})


def test_bound_class_direction_with_a_large_tv_bound():
    params = _params(tau=0.2, target=1)
    counts = (800, 200)
    tv = 0.01
    cls, p_lower, _, details = bound_class(_evidence(counts, tv=tv), params, "tokens")
    p_cp = float(clopper_pearson_lower(200, 1000, alpha=0.01))
    p_up = float(clopper_pearson_upper(200, 1000, alpha=0.01))
    assert cls == 1 and p_lower == p_cp - tv and details.p_lower_cp == p_cp
    for tau, expected in [(p_up + 0.5 * tv, False), (p_up + 1.5 * tv, True)]:
        params_tau = _params(tau=tau, target=1)
        _, _, _, det = bound_class(_evidence(counts, tv=tv), params_tau, "tokens")
        assert det.certified_not_flagged is expected
    # Floored at 0, never negative.
    assert bound_class(_evidence((1000, 0), tv=tv), params, "tokens")[1] == 0.0


def test_tv_bound_is_subtracted_in_majority_mode_with_selection_counts():
    params = _params(n0=10, n=100, alpha=0.05)
    cls, p_lower, _, _ = bound_class(_evidence((5, 95), (2, 8), tv=0.125), params, "tokens")
    assert cls == 1
    assert p_lower == float(clopper_pearson_lower(95, 100, alpha=0.05)) - 0.125


def test_decision_rejects_evidence_of_another_configuration():
    params = _params(n0=10, n=100, alpha=0.05)
    with pytest.raises(InvalidParameterError, match="estimation stage drew n = 50"):
        bound_class(_evidence((5, 45), (2, 8)), params, "tokens")
    with pytest.raises(InvalidParameterError, match="no 'selection' stage"):
        bound_class(_evidence((5, 95)), params, "tokens")
    with pytest.raises(InvalidParameterError, match="'selection' stage, which method"):
        bound_class(_evidence((5, 95), (2, 8)), _params(n=100, target=1, tau=0.1), "tokens")


def _p_with_bound_exactly(target, *, d, **kw):
    """Smallest float p with token_lower_bound(p, d) == target exactly (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if float(token_lower_bound(mid, d=d, **kw)) < target:
            lo = mid
        else:
            hi = mid
    assert float(token_lower_bound(hi, d=d, **kw)) == target
    return hi


def test_majority_rule_is_strict():
    mode = TokenParams(beta=0.75, kernel="mask", mask_id=9, n0=1, n=1, alpha=0.1)
    assert mode.certified(0.5) is False
    assert mode.certified(float(np.nextafter(0.5, 1.0))) is True
    # L(1) == 0.5 exactly (L(0) ~ 0.75): d = 0 is certified, d = 1 is not.
    p = _p_with_bound_exactly(0.5, d=1, beta=0.75, kernel="mask")
    assert float(token_lower_bound(p, d=0, beta=0.75, kernel="mask")) > 0.5
    assert certified_tokens(p, mode, d_max=3) == 0
    # L(0) == 0.5 exactly: nothing is certified (abstain).
    p0 = _p_with_bound_exactly(0.5, d=0, beta=0.3, vocab_size=5)
    uniform = TokenParams(beta=0.3, alphabet=5, n0=1, n=1, alpha=0.1)
    assert certified_tokens(p0, uniform, d_max=3) is None
    # Safety-filter mode keeps ">= tau" (tau = 1/2 here): the same bound is certified.
    safety = TokenParams(beta=0.75, kernel="mask", mask_id=9, n0=0, n=1, alpha=0.1, target=1)
    assert safety.certified(0.5) is True
    assert certified_tokens(p, safety, d_max=3) >= 1


@pytest.mark.parametrize("vocab, beta", [(3, 0.3), (4, 0.4)])
def test_alphabet_size_reaches_the_certificate(vocab, beta):
    """A configuration whose brute-force certified d differs between V and V + 1."""
    n, alpha = 2000, 0.001
    res = certify(
        Constant(1, 2).eval(),
        torch.zeros(6, dtype=torch.int64),
        beta=beta,
        alphabet=vocab,
        n0=20,
        n=n,
        alpha=alpha,
        threat=threats.anywhere(d_max=5),
    )
    assert res.counts_estimation == (0, n) and res.params.vocab_size == vocab
    kw = {"d_max": 5, "tau": 0.5, "majority": True, "beta": beta}
    expected = brute_force_radius(res.p_lower, vocab_size=vocab, **kw)
    assert expected != brute_force_radius(res.p_lower, vocab_size=vocab + 1, **kw)
    assert res.radius == expected


def test_safety_filter_ignores_n0_and_draws_no_selection_samples():
    model = Recorder(KeepsToken(1, 1).eval())
    res = certify(
        model,
        torch.tensor([0, 1, 2]),
        beta=0.5,
        alphabet=3,
        n0=50,
        n=300,
        alpha=0.01,
        tau=0.05,
        target=1,
        batch_size=100,
    )
    assert res.n0 == 0 and res.counts_selection == ()
    assert res.params.n0 == 50
    assert len(model.seen) == 1 + 3  # the probe, then the n estimation samples only
    assert sum(res.counts_estimation) == 300


class SmallEmbedding(torch.nn.Module):
    """An embedding with 5 rows: token ids >= 5 raise IndexError."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(5, 2)

    def forward(self, toks):
        return self.emb(toks).mean(1)


def test_alphabet_larger_than_the_embedding_is_reported():
    model = SmallEmbedding().eval()
    kw = dict(beta=0.9, alphabet=50, n0=10, n=100, alpha=0.01)
    with pytest.raises(InvalidParameterError, match=r"noisy sample.*IndexError.*vocab_size") as e:
        certify(model, torch.tensor([0, 1, 2]), **kw)
    assert "index out of range" in str(e.value) and isinstance(e.value.__cause__, IndexError)
    with pytest.raises(InvalidParameterError, match=r"clean input.*IndexError.*embedding"):
        certify(model, torch.tensor([0, 1, 7]), **kw)


def test_model_errors_name_shape_dtype_device_and_keep_the_message():
    class WrongDevice(torch.nn.Module):
        def forward(self, toks):
            raise RuntimeError("Expected all tensors to be on the same device, cuda:0 and cpu")

    with pytest.raises(InvalidParameterError) as e:
        certify(
            WrongDevice().eval(), torch.tensor([1, 2]), beta=0.3, alphabet=5, n0=1, n=1, alpha=0.1
        )
    msg = str(e.value)
    assert "rejected by the model" in msg and "input shape" not in msg
    assert "shape (2,), dtype torch.int64, device cpu" in msg
    assert "RuntimeError: Expected all tensors to be on the same device" in msg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "bogus"}, r"threat kind = 'bogus' is invalid; valid: \("),
        ({"kind": "append_suffix"}, r"num_positions = None is invalid .*num_positions >= 1"),
        (
            {"kind": "append_suffix", "num_positions": 3},
            r"placeholder_id = None is invalid .*a token id >= 0",
        ),
        (
            {"kind": "append_suffix", "num_positions": 3, "placeholder_id": -1},
            r"placeholder_id = -1 is invalid; valid range: integer placeholder_id >= 0",
        ),
        (
            {"kind": "last_d", "num_positions": 0},
            r"num_positions = 0 is invalid; valid range: integer num_positions >= 1",
        ),
        ({"kind": "last_d", "num_positions": -2}, r"num_positions = -2 is invalid"),
        ({"kind": "last_d", "num_positions": 2.0}, r"num_positions = 2.0 is invalid"),
        (
            {"kind": "last_d", "num_positions": 2, "placeholder_id": 1},
            r"placeholder_id = 1 is invalid for threat kind 'last_d'; valid: None",
        ),
        (
            {"kind": "anywhere", "num_positions": 3},
            r"num_positions = 3 is invalid for .*'anywhere'",
        ),
        ({"kind": "anywhere", "eligible": (1,)}, r"eligible = \(1,\) is invalid for .*'anywhere'"),
        ({"kind": "positions"}, r"eligible = None is invalid for threat kind 'positions'"),
        ({"kind": "positions", "eligible": 3}, r"eligible = 3 is invalid; valid: a sequence"),
        ({"kind": "positions", "eligible": (1, 1)}, r"eligible position 1 is repeated"),
        (
            {"kind": "positions", "eligible": (-1,)},
            r"eligible position = -1 is invalid; valid range: integer eligible position >= 0",
        ),
        (
            {"kind": "positions", "eligible": (0, 5), "mask_length": 3},
            r"mask_length = 3 is invalid; valid range: integer mask_length >= 6",
        ),
        (
            {"kind": "last_d", "num_positions": 2, "d_max": 3},
            r"d_max = 3 is invalid; valid range: integer 0 <= d_max <= 2",
        ),
        ({"kind": "positions", "eligible": (0, 2), "d_max": 3}, r"d_max = 3 is invalid"),
        ({"kind": "anywhere", "d_max": -1}, r"d_max = -1 is invalid"),
    ],
)
def test_threat_model_validates_direct_construction(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        threats.ThreatModel(**kwargs)


def test_threats_accept_numpy_integers_and_arrays():
    assert threats.positions([np.int64(0), np.int64(2)]).eligible == (0, 2)
    assert threats.positions(np.array([2, 0])).eligible == (0, 2)
    mask = threats.positions(np.array([True, False, True]))
    assert mask.eligible == (0, 2) and mask.mask_length == 3
    assert threats.last_d(np.int64(2), d_max=np.int64(1)).apply(torch.arange(4)).d_max == 1
    suffix = threats.append_suffix(np.int64(2), placeholder_id=np.int64(4))
    direct = threats.ThreatModel("positions", eligible=(np.int64(3), np.int64(1)))
    assert direct.eligible == (1, 3) and all(type(i) is int for i in direct.eligible)
    for threat in (suffix, direct, mask):
        json.dumps(threat.params())  # plain Python ints only
    with pytest.raises(InvalidParameterError, match=r"eligible.dtype = numpy float64 is invalid"):
        threats.positions(np.array([0.0, 1.0]))
