"""The fields kernel samples exactly the per-field law the certificate assumes.

Through the dataset path: a row of the bundled ``fair`` table, the parameters the CLI
builds for it (the dataset's alphabets, the bundled model's betas) and the kernel
``prepare`` binds from those parameters. Each field must change with probability
``beta_f`` and, when it changes, take each of the ``V_f - 1`` OTHER ids with probability
``1 / (V_f - 1)``. A kernel that draws uniformly over all ``V_f`` ids (the original
included) changes field ``f`` with probability ``beta_f (V_f - 1) / V_f``, e.g. 0.2625
instead of 0.35 for the religious field (V = 4): the change-rate check fails it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, chisquare

from smoothcert.cli import build_run_config
from smoothcert.data import load_dataset
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.fields import prepare
from smoothcert.models import load_model, weights_info
from smoothcert.models.train_tabular import TABULAR_BETAS
from smoothcert.noise.fields import FieldsNoise

N = 40_000


def fair_params():
    config = build_run_config(
        method="hybrid-fields",
        options={"sigma": 0.5},
        run_fields={"model": "tabular_mlp", "dataset": "fair", "split": "test"},
    )
    return config.method_params()


def test_cli_parameters_come_from_the_dataset_and_the_model_manifest() -> None:
    params = fair_params()
    ds = load_dataset("fair", "test")
    assert params.field_vocab_sizes == ds.field_vocab_sizes == (5, 4, 6, 6, 6)
    manifest = weights_info("tabular_mlp", sigma=0.5).metadata
    assert params.field_betas == tuple(manifest["field_betas"]) == TABULAR_BETAS
    assert tuple(manifest["field_vocab_sizes"]) == params.field_vocab_sizes


def test_each_field_changes_at_its_beta_uniformly_over_the_other_ids() -> None:
    params = fair_params()
    ds = load_dataset("fair", "test")
    row = 7
    tokens = torch.from_numpy(ds.tokens[row].copy())
    cont = torch.from_numpy(ds.images[row].copy())
    prepared = prepare(
        load_model("tabular_mlp", sigma=0.5), (tokens, cont), params, seed=0, batch_size=N
    )
    bound = prepared.sampler.noise
    assert bound.noise.vocab_sizes == params.field_vocab_sizes
    assert bound.noise.betas == params.field_betas
    assert bound.noise.sigma == params.sigma
    toks, noisy = bound.sample(N, generator=torch.Generator().manual_seed(1))
    toks = toks.numpy().copy()
    for f, (vocab, beta) in enumerate(
        zip(params.field_vocab_sizes, params.field_betas, strict=True)
    ):
        changed = toks[:, f] != int(tokens[f])
        # change rate: two-sided binomial test at 1e-4 (V instead of V - 1 gives a rate
        # 1/V lower: a 10-40 standard-error miss at N = 40,000)
        assert binomtest(int(changed.sum()), N, beta).pvalue > 1e-4, (f, changed.mean(), beta)
        values = toks[changed, f]
        assert values.min() >= 0 and values.max() < vocab
        counts = np.bincount(values, minlength=vocab)
        assert counts[int(tokens[f])] == 0  # never "changed" to the original
        others = np.delete(counts, int(tokens[f]))
        assert chisquare(others).pvalue > 1e-4, (f, others)
    # the continuous part: N(x, sigma^2 I)
    diff = (noisy - cont).numpy()
    assert abs(diff.std() - params.sigma) < 0.01 and abs(diff.mean()) < 0.01


def test_v_instead_of_v_minus_1_is_caught() -> None:
    # The check above, applied to a sampler that draws uniformly over all V ids, fails.
    rng = np.random.default_rng(0)
    vocab, beta, original = 4, 0.35, 2
    replace = rng.random(N) < beta
    wrong = np.where(replace, rng.integers(0, vocab, N), original)
    assert binomtest(int((wrong != original).sum()), N, beta).pvalue < 1e-4


def test_bad_rows_are_rejected_before_sampling() -> None:
    noise = FieldsNoise(vocab_sizes=(5, 4), betas=(0.3, 0.35), sigma=0.5)
    with pytest.raises(InvalidParameterError, match=r"category id 4 of field 1 .*0 <= id <= 3"):
        noise.bind(torch.tensor([0, 4]), torch.zeros(3))
    with pytest.raises(InvalidParameterError, match=r"tokens.shape = \(3,\).*\(2,\)"):
        noise.bind(torch.tensor([0, 1, 2]), torch.zeros(3))
    with pytest.raises(InvalidParameterError, match="NaN or Inf"):
        noise.bind(torch.tensor([0, 1]), torch.tensor([0.0, float("nan")]))
    with pytest.raises(InvalidParameterError, match="1-D float tensor"):
        noise.bind(torch.tensor([0, 1]), torch.zeros(1, 3))
    with pytest.raises(InvalidParameterError, match="2 field vocab sizes and 1 field betas"):
        FieldsNoise(vocab_sizes=(5, 4), betas=(0.3,), sigma=0.5)


def test_same_seed_same_samples_and_tv_bound_sums_fields() -> None:
    noise = FieldsNoise(vocab_sizes=(5, 4, 6), betas=(0.3, 0.35, 0.45), sigma=0.5)
    bound = noise.bind(torch.tensor([0, 1, 2]), torch.zeros(3))
    a = [t.clone() for t in bound.sample(50, generator=torch.Generator().manual_seed(3))]
    b = [t.clone() for t in bound.sample(50, generator=torch.Generator().manual_seed(3))]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert bound.tv_bound() == pytest.approx(sum(f.tv_bound() for f in bound.fields))
    assert 0 < bound.tv_bound() < 1e-15
