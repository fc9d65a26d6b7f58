"""The hybrid kernel of a CLI run on ``listings`` samples exactly the law it certifies.

Through the dataset path: the parameters ``smoothcert certify --method hybrid --model
listing_filter --dataset listings --sigma 0.25`` builds (beta from the model manifest, the
dataset's 30,522-id alphabet, the dataset's per-example eligible positions), the inputs the
runner takes from the dataset, and the kernel ``prepare`` binds from them. Each eligible
token must change with probability beta and never to itself (a kernel that drew over all V
ids would keep it with probability ``beta / V`` more: invisible at V = 30,522, so the
"never itself" check is what catches that mistake here); every other position, [CLS],
[SEP] and padding included, must never change; the image gets ``N(0, sigma^2)`` per pixel.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import binomtest, chi2

from smoothcert.cli import build_run_config
from smoothcert.data import load_dataset
from smoothcert.methods.hybrid import prepare
from smoothcert.methods.registry import get_method
from smoothcert.models import load_model, weights_info
from smoothcert.runner.run import example_inputs

N = 20_000


def test_cli_hybrid_run_samples_the_certified_kernel() -> None:
    config = build_run_config(
        method="hybrid",
        options={"sigma": 0.25},
        run_fields={"model": "listing_filter", "dataset": "listings", "split": "test"},
    )
    params = config.method_params()
    assert params.beta == weights_info("listing_filter", 0.25).metadata["beta"] == 0.7
    assert params.vocab_size == 30_522 and params.threat == "given"
    ds = load_dataset("listings", "test")
    position = 3
    inputs, options = example_inputs(get_method("hybrid"), ds, position, threat=params.threat)
    tokens, image = inputs
    prepared = prepare(
        load_model("listing_filter", sigma=0.25), inputs, params, seed=0, batch_size=N, **options
    )
    eligible = np.flatnonzero(options["eligible"])
    assert prepared.facts.num_eligible == eligible.size == int(ds.lengths[position]) - 2
    toks, noisy = prepared.sampler.noise.sample(N, generator=torch.Generator().manual_seed(2))
    toks, clean = toks.numpy(), tokens.numpy()
    fixed = np.setdiff1d(np.arange(clean.size), eligible)
    assert (toks[:, fixed] == clean[fixed]).all()  # [CLS], [SEP], padding: never noised
    changed = toks[:, eligible] != clean[eligible]
    # each eligible position changes at beta (two-sided binomial test at 1e-4) ...
    for j in range(eligible.size):
        assert binomtest(int(changed[:, j].sum()), N, 0.7).pvalue > 1e-4
    # ... jointly (a chi-square over the positions' change counts) ...
    k = changed.sum(axis=0)
    stat = float(((k - 0.7 * N) ** 2 / (N * 0.7 * 0.3)).sum())
    assert chi2.sf(stat, df=eligible.size) > 1e-4
    # ... to another alphabet id, uniformly over the alphabet: as many distinct ids as
    # uniform draws give, and equal shares of 32 id ranges (chi-square)
    new = toks[:, eligible][changed]
    assert new.min() >= 0 and new.max() < 30_522
    expected_distinct = 30_522 * (1 - np.exp(-new.size / 30_522))
    assert np.unique(new).size > 0.98 * expected_distinct
    edges = np.linspace(0, 30_522, 33)
    observed = np.histogram(new, bins=edges)[0]
    expected = np.diff(edges) / 30_522 * new.size
    assert chi2.sf(float(((observed - expected) ** 2 / expected).sum()), df=31) > 1e-4
    # the image: N(x, sigma^2) per pixel, in the [0, 1]-pixel units of the 14x14 image
    diff = (noisy - image).numpy()
    assert abs(diff.std() - 0.25) < 0.005 and abs(diff.mean()) < 0.005
