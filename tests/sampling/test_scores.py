"""Soft-score reducer: score sums on the device equal a plain per-sample computation."""

import numpy as np
import pytest
import torch

from sampling_toys import TinyNet, X, gaussian_sampler, noisy_logits, prepared
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.sampler import Prepared, draw, draw_many
from smoothcert.records import Evidence
from smoothcert.sampling import count_classes
from smoothcert.sampling.scores import (
    MAX_SCORE_SAMPLES,
    SCORE_SCALE,
    apply_score_map,
    score_classes,
    score_classes_many,
    sparsemax,
)

QUANTUM = 1.0 / SCORE_SCALE


def sparsemax_reference(z: np.ndarray) -> np.ndarray:
    """Projection onto the simplex by bisection on tau (independent of the sort formula)."""
    out = np.empty_like(z)
    for i, row in enumerate(z):
        lo, hi = row.max() - 1.0, row.max()  # sum(max(z - tau, 0)) is 1 in between
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if np.maximum(row - mid, 0.0).sum() > 1.0:
                lo = mid
            else:
                hi = mid
        out[i] = np.maximum(row - 0.5 * (lo + hi), 0.0)
    return out


def softmax_reference(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_sparsemax_matches_a_bisection_reference_and_its_known_properties() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2.0, size=(200, 7))
    z[0] = 0.3  # all equal: uniform
    z[1] = [5.0, 0, 0, 0, 0, 0, 0]  # one far ahead: one-hot
    got = sparsemax(torch.as_tensor(z)).numpy()
    np.testing.assert_allclose(got, sparsemax_reference(z), atol=1e-12)
    assert (got >= 0).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got[0], 1 / 7, atol=1e-15)
    assert got[1].tolist() == [1.0, 0, 0, 0, 0, 0, 0]
    # shift invariance, order preserved, sparse: many exact zeros
    np.testing.assert_allclose(sparsemax(torch.as_tensor(z + 3.7)).numpy(), got, atol=1e-12)
    assert np.all((got[:, :, None] - got[:, None, :]) * (z[:, :, None] - z[:, None, :]) >= 0)
    assert (got == 0).sum() > 200
    # the 2-class closed form: p0 = clip((z0 - z1 + 1) / 2, 0, 1)
    two = rng.normal(size=(50, 2))
    closed = np.clip((two[:, 0] - two[:, 1] + 1) / 2, 0, 1)
    np.testing.assert_allclose(sparsemax(torch.as_tensor(two)).numpy()[:, 0], closed, atol=1e-12)


def test_score_maps_hardmax_softmax_temperature() -> None:
    z = torch.tensor([[1.0, 2.0, -1.0], [0.0, 0.0, 3.0]])
    assert apply_score_map(z, "hardmax", 5.0).tolist() == [[0, 1, 0], [0, 0, 1]]
    np.testing.assert_allclose(
        apply_score_map(z, "softmax", 2.0).numpy(), softmax_reference(2 * z.double().numpy())
    )
    with pytest.raises(InvalidParameterError, match="score_map = 'argmax' is invalid"):
        apply_score_map(z, "argmax", 1.0)


def plain_scores(model, x, seed, num, batch_size, score_map, temperature):
    """Per-sample reference: the same noise draws, every score on the host in numpy."""
    z = noisy_logits(model, x, seed, num, batch_size)
    if score_map == "hardmax":
        s = np.eye(z.shape[1])[z.argmax(axis=1)]
    elif score_map == "softmax":
        s = softmax_reference(temperature * z)
    else:
        s = sparsemax_reference(temperature * z)
    return s


@pytest.mark.parametrize("score_map", ["hardmax", "softmax", "sparsemax"])
def test_engine_sums_equal_a_plain_per_sample_computation(score_map) -> None:
    model, num, bs = TinyNet().eval(), 250, 64
    out = score_classes(
        model,
        gaussian_sampler(X, 5),
        num,
        num_classes=4,
        batch_size=bs,
        device="cpu",
        score_map=score_map,
        temperature=1.5,
    )
    s = plain_scores(model, X, 5, num, bs, score_map, 1.5)
    counts = count_classes(
        model, gaussian_sampler(X, 5), num, num_classes=4, batch_size=bs, device="cpu"
    )
    assert out.counts.tolist() == counts.tolist()
    assert out.sums.dtype == np.float64 and out.sq_sums.dtype == np.float64
    if score_map == "hardmax":  # votes: exactly the counts
        assert out.sums.tolist() == counts.astype(float).tolist()
        assert out.sq_sums.tolist() == counts.astype(float).tolist()
    # each score is rounded down to the 2^-31 grid (the reference's own rounding: 1e-12)
    slack = num * QUANTUM + 1e-9
    exact, exact_sq = s.sum(axis=0), (s * s).sum(axis=0)
    assert np.all(out.sums <= exact + 1e-9) and np.all(out.sums >= exact - slack)
    np.testing.assert_allclose(out.sums, exact, atol=slack)
    np.testing.assert_allclose(out.sq_sums, exact_sq, atol=3 * slack)
    np.testing.assert_allclose(out.sums.sum(), num, atol=slack * 4)
    assert np.all(out.sums <= num) and np.all(out.sq_sums <= out.sums + 1e-12)


@pytest.mark.parametrize("score_map", ["hardmax", "softmax", "sparsemax"])
@pytest.mark.parametrize("max_batch", [None, 32])
def test_many_inputs_equal_one_at_a_time_exactly(score_map, max_batch) -> None:
    model = TinyNet().eval()
    xs = [X + 0.3 * i for i in range(3)]
    kw = dict(num_classes=4, batch_size=16, device="cpu", score_map=score_map, temperature=0.8)
    many = score_classes_many(
        model,
        [gaussian_sampler(x, 10 + i) for i, x in enumerate(xs)],
        70,
        max_batch=max_batch,
        **kw,
    )
    for i, x in enumerate(xs):
        one = score_classes(model, gaussian_sampler(x, 10 + i), 70, **kw)
        assert many.counts[i].tolist() == one.counts.tolist()
        assert many.sums[i].tolist() == one.sums.tolist()  # bit-identical
        assert many.sq_sums[i].tolist() == one.sq_sums.tolist()


def test_sums_are_the_exact_sums_of_the_rounded_down_scores() -> None:
    # integer accumulation: the order of additions cannot change the totals
    model = TinyNet().eval()
    kw = dict(num_classes=4, device="cpu", score_map="softmax", temperature=1.0)
    a = score_classes(model, gaussian_sampler(X, 2), 200, batch_size=200, **kw)
    s = plain_scores(model, X, 2, 200, 200, "softmax", 1.0)
    q = np.floor(s * SCORE_SCALE) / SCORE_SCALE  # the documented rounding
    # (numpy's and torch's softmax may differ by an ulp, which can move one grid step)
    assert np.abs(a.sums - q.sum(axis=0)).max() <= 4 * QUANTUM
    assert np.abs(a.sq_sums - (q * q).sum(axis=0)).max() <= 8 * QUANTUM


def test_bad_arguments_are_rejected_before_sampling() -> None:
    calls = []

    def sampler(b):
        calls.append(b)
        return (torch.zeros(b, 6),)

    model = torch.nn.Linear(6, 3)
    kw = dict(num_classes=3, batch_size=8, device="cpu")
    with pytest.raises(InvalidParameterError, match="score_map = 'soft' is invalid.*sparsemax"):
        score_classes(model, sampler, 10, score_map="soft", **kw)
    for t in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidParameterError, match="temperature"):
            score_classes(model, sampler, 10, score_map="softmax", temperature=t, **kw)
    with pytest.raises(InvalidParameterError, match="num_samples"):
        score_classes(model, sampler, MAX_SCORE_SAMPLES + 1, score_map="softmax", **kw)
    with pytest.raises(InvalidParameterError, match="temperature"):
        score_classes_many(model, [sampler], 10, score_map="softmax", temperature=0, **kw)
    assert calls == []


def test_non_finite_logits_are_rejected() -> None:
    model = lambda x: torch.full((x.shape[0], 3), float("nan"))  # noqa: E731
    with pytest.raises(InvalidParameterError, match="NaN or Inf"):
        score_classes(
            model,
            lambda b: (torch.zeros(b, 2),),
            5,
            num_classes=3,
            batch_size=4,
            device="cpu",
            score_map="softmax",
        )


def prepared_for(x: torch.Tensor, seed: int, scores) -> Prepared:
    return prepared(TinyNet().eval(), x, seed, scores)


def test_draw_records_score_sums_only_for_stages_that_ask_and_draw_many_matches() -> None:
    plain = draw(prepared_for(X, 1, None))
    assert all(s.score_sums is None and s.score_sq_sums is None for s in plain.stages)
    soft = draw(prepared_for(X, 1, ("sparsemax", 2.0)))
    assert [s.counts for s in soft.stages] == [s.counts for s in plain.stages]  # same stream
    assert all(len(s.score_sums) == 4 and len(s.score_sq_sums) == 4 for s in soft.stages)
    # draw_many shares one model; build the inputs around one TinyNet
    model = TinyNet().eval()
    xs = [X, X * 0.5, X - 0.2]

    def prep(x, seed):
        return prepared(model, x, seed, ("softmax", 1.0))

    many = draw_many([prep(x, 7 + i) for i, x in enumerate(xs)])
    for i, x in enumerate(xs):
        one: Evidence = draw(prep(x, 7 + i))
        assert [s.to_dict() for s in many[i].stages] == [s.to_dict() for s in one.stages]
