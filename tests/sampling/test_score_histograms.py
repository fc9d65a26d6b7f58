"""Per-class score histograms on the device (for the betting bounds).

Oracle: the same noise draws, the logits mapped on the host in numpy and histogrammed by
:func:`smoothcert.stats.score_histogram`; shared forward batches equal one input at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampling_toys import TinyNet, X, gaussian_sampler, noisy_logits, prepared
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.sampler import Prepared, draw, draw_many
from smoothcert.records import Evidence, ScoreHistograms, StageEvidence
from smoothcert.sampling.scores import score_classes, score_classes_many
from smoothcert.stats import HISTOGRAM_BINS, score_histogram


def host_scores(model, x, seed, num, batch_size, score_map, temperature) -> np.ndarray:
    """The same noise, logits mapped on the host in numpy (float64)."""
    z = temperature * noisy_logits(model, x, seed, num, batch_size)
    if score_map == "hardmax":
        return np.eye(z.shape[1])[z.argmax(axis=1)]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("score_map", ["softmax", "hardmax"])
@pytest.mark.parametrize("bins", [16, HISTOGRAM_BINS])
def test_device_histograms_equal_a_numpy_histogram_of_the_same_noise(score_map, bins) -> None:
    model, num, bs = TinyNet().eval(), 300, 64
    out = score_classes(
        model,
        gaussian_sampler(X, 5),
        num,
        num_classes=4,
        batch_size=bs,
        device="cpu",
        score_map=score_map,
        temperature=1.5,
        histogram_bins=bins,
    )
    s = host_scores(model, X, 5, num, bs, score_map, 1.5)
    expected = score_histogram(s.T, bins=bins)  # (classes, B + 1)
    assert out.histograms is not None and out.histograms.dtype == np.int64
    assert out.histograms.shape == (4, bins + 1)
    # softmax in torch and numpy may differ in the last ulp: a score on a bin edge could
    # move; with these draws none does, and every class counts all samples
    assert out.histograms.tolist() == expected.tolist()
    assert out.histograms.sum(axis=1).tolist() == [num] * 4
    if score_map == "hardmax":  # votes: bins 0 and B only, the counts in bin B
        assert out.histograms[:, -1].tolist() == out.counts.tolist()
        assert out.histograms[:, 1:-1].sum() == 0


@pytest.mark.parametrize("max_batch", [None, 32])
def test_shared_batches_equal_one_input_at_a_time(max_batch) -> None:
    model = TinyNet().eval()
    xs = [X + 0.3 * i for i in range(3)]
    kw = dict(num_classes=4, batch_size=16, device="cpu", score_map="softmax", temperature=0.8)
    many = score_classes_many(
        model,
        [gaussian_sampler(x, 10 + i) for i, x in enumerate(xs)],
        70,
        max_batch=max_batch,
        histogram_bins=256,
        **kw,
    )
    assert many.histograms is not None and many.histograms.shape == (3, 4, 257)
    for i, x in enumerate(xs):
        one = score_classes(model, gaussian_sampler(x, 10 + i), 70, histogram_bins=256, **kw)
        assert one.histograms is not None
        assert many.histograms[i].tolist() == one.histograms.tolist()
        assert many.sums[i].tolist() == one.sums.tolist()


def test_no_histograms_unless_asked() -> None:
    out = score_classes(
        TinyNet().eval(),
        gaussian_sampler(X, 1),
        20,
        num_classes=4,
        batch_size=8,
        device="cpu",
        score_map="softmax",
    )
    assert out.histograms is None


@pytest.mark.parametrize(("bins", "needle"), [(3, "bins = 3 is invalid"), (0, "bins = 0")])
def test_bad_histogram_bins_are_rejected_before_sampling(bins, needle) -> None:
    def never(b):  # pragma: no cover - must not be called
        raise AssertionError("sampled")

    with pytest.raises(InvalidParameterError, match=needle):
        score_classes(
            TinyNet().eval(),
            never,
            10,
            num_classes=4,
            batch_size=4,
            device="cpu",
            score_map="softmax",
            histogram_bins=bins,
        )


def _prepared(model, x, seed, bins) -> Prepared:
    return prepared(model, x, seed, ("softmax", 1.0), bins)


def test_stages_keep_histograms_when_planned_and_draw_many_matches_draw() -> None:
    model = TinyNet().eval()
    xs = [X, X * 0.5, X - 0.2]
    plain = draw(_prepared(model, X, 7, None))
    assert all(s.score_histograms is None for s in plain.stages)
    many = draw_many([_prepared(model, x, 7 + i, 64) for i, x in enumerate(xs)])
    for i, x in enumerate(xs):
        one: Evidence = draw(_prepared(model, x, 7 + i, 64))
        sel, est = one.stages
        assert sel.score_histograms is None
        assert isinstance(est.score_histograms, ScoreHistograms) and est.score_histograms.bins == 64
        assert est.score_histograms.totals() == (50,) * 4
        assert [s.to_dict() for s in many[i].stages] == [s.to_dict() for s in one.stages]
    # same generator stream: the sums equal those of a plan without histograms
    assert draw(_prepared(model, X, 7, 64)).stages[1].score_sums == plain.stages[1].score_sums


# --- records: sparse JSON, round trip, old records -----------------------------------------


def test_stage_histograms_round_trip_sparsely_and_old_stages_still_read() -> None:
    dense = np.zeros((2, 9), dtype=np.int64)
    dense[0, [0, 3]] = [4, 6]
    dense[1, 8] = 10
    hist = ScoreHistograms.from_dense(dense)
    stage = StageEvidence(
        "estimation",
        n=10,
        alpha=0.01,
        counts=(0, 10),
        score_sums=(1.2, 8.8),
        score_sq_sums=(0.5, 8.0),
        score_histograms=hist,
    )
    data = stage.to_dict()
    assert data["score_histograms"] == {"bins": 8, "classes": [[[0, 4], [3, 6]], [[8, 10]]]}
    assert StageEvidence.from_dict(data) == stage
    assert hist.dense().tolist() == dense.tolist()
    old = {k: v for k, v in data.items() if k != "score_histograms"}
    assert StageEvidence.from_dict(old).score_histograms is None
    assert "score_histograms" not in StageEvidence.from_dict(old).to_dict()


@pytest.mark.parametrize(
    ("hist", "needle"),
    [
        ({"bins": 3, "classes": [[[0, 10]], [[0, 10]]]}, "histogram bins = 3 is invalid"),
        ({"bins": 4, "classes": [[[5, 10]], [[0, 10]]]}, r"pair \[5, 10\] is invalid"),
        ({"bins": 4, "classes": [[[2, 5], [1, 5]], [[0, 10]]]}, "increasing order"),
        ({"bins": 4, "classes": [[[0, 9]], [[0, 10]]]}, r"count \(9, 10\) samples"),
        ({"bins": 4, "classes": [[[0, 10]]]}, "each of the 2 classes"),
        ({"bins": 4}, "valid: an object with 'bins' and 'classes'"),
        ({"bins": 4, "classes": [[["x", 10]], [[0, 10]]]}, "integer pairs"),
        ({"bins": 4, "classes": [[[0, 10.5]], [[0, 10]]]}, "integer pairs"),
    ],
)
def test_bad_stage_histograms_are_rejected(hist, needle) -> None:
    data = {"role": "estimation", "n": 10, "alpha": 0.0, "counts": [3, 7]}
    with pytest.raises(InvalidParameterError, match=needle):
        StageEvidence.from_dict({**data, "score_histograms": hist})
