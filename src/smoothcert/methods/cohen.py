"""Gaussian randomized smoothing: CERTIFY and PREDICT of Cohen et al. 2019.

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing"
(arXiv 1902.02918), Algorithm "CERTIFY" and "PREDICT". The smoothed classifier is
``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``. ``sigma`` and the radius
are in the units of the tensor ``x`` (pixels in [0, 1] for the bundled models; if the
model normalises inside, the radius is still in the units of ``x``).

Soundness: the n0 selection samples pick the class; n fresh samples (the same
generator, continued, hence independent draws) bound its probability with a one-sided
Clopper-Pearson bound at level alpha.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 2).eval()
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> res = certify(model, torch.tensor([1.0, 0.0]), sigma=0.5, n0=100, n=10_000,
    ...               alpha=0.001, batch_size=1000, seed=0)
    >>> res.prediction, 0.8 < res.radius < 1.0
    (0, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest

from smoothcert._validation import check_int, check_positive, check_probability_level
from smoothcert.certificates.gaussian import gaussian_radius, gaussian_radius_top2
from smoothcert.methods._common import (
    check_eval_mode,
    check_image,
    model_device,
    probe_num_classes,
)
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.records import CertifyResult
from smoothcert.sampling.device import check_device
from smoothcert.sampling.engine import count_classes, make_generator
from smoothcert.stats.binomial import clopper_pearson_lower, runner_up_upper

Counts = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class _GaussianSampling:
    """A validated model, input and noise kernel, with one generator for every stage."""

    model: Callable[..., torch.Tensor]
    x: torch.Tensor
    kernel: GaussianNoise
    generator: torch.Generator
    classes: int
    batch_size: int
    device: torch.device
    autocast_dtype: torch.dtype | None

    def counts(self, num: int) -> Counts:
        """Class counts of ``num`` fresh noisy samples (the generator continues)."""
        return count_classes(
            self.model,
            lambda b: (self.kernel.sample(self.x, b, generator=self.generator),),
            num,
            num_classes=self.classes,
            batch_size=self.batch_size,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
        )


def _prepare(
    model: Callable[..., torch.Tensor],
    x: Any,
    *,
    sigma: float,
    alpha: float,
    batch_size: int,
    seed: int,
    num_classes: int | None,
    device: torch.device | str | None,
    input_shape: tuple[int, ...] | None,
    autocast_dtype: torch.dtype | None,
) -> tuple[_GaussianSampling, float, float]:
    """Validate every argument (before any sampling); return the sampler, sigma, alpha."""
    sigma = check_positive(sigma, name="sigma")
    alpha = check_probability_level(alpha)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    seed = check_int(seed, name="seed", minimum=0, maximum=2**63 - 1)
    if num_classes is not None:
        num_classes = check_int(num_classes, name="num_classes", minimum=2)
    check_image(x, input_shape=input_shape)
    check_eval_mode(model)
    dev = check_device(device) if device is not None else model_device(model, x.device)
    x = x.to(dev)
    classes = probe_num_classes(model, (x.unsqueeze(0),), num_classes)
    sampling = _GaussianSampling(
        model=model,
        x=x,
        kernel=GaussianNoise(sigma),
        generator=make_generator(seed, dev),
        classes=classes,
        batch_size=batch_size,
        device=dev,
        autocast_dtype=autocast_dtype,
    )
    return sampling, sigma, alpha


def certify(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    top2: bool = False,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify the smoothed prediction at ``x`` within an L2 ball (Cohen et al. CERTIFY).

    Draws n0 selection samples to choose the class A, then n fresh samples for
    ``n_A``; ``p_lower = CP_lower(n_A, n; alpha)``; abstains when ``p_lower <= 1/2``,
    otherwise the radius is ``sigma * Phi^-1(p_lower)`` (Theorem 1). With ``top2`` the
    bounds are split: ``p_lower`` at alpha/2 and the runner-up's upper bound at
    alpha/2 (capped by ``1 - p_lower``), radius ``sigma/2 (Phi^-1(p_lower) -
    Phi^-1(p_upper))``; it abstains when ``p_lower <= p_upper``.

    Args:
        model: ``torch.nn.Module`` in eval mode (or any callable) mapping a batch
            ``(B, *x.shape)`` to logits/scores ``(B, num_classes)``.
        x: one input, no batch axis, finite floating-point tensor.
        sigma: noise standard deviation, > 0, in the units of ``x``.
        n0: number of selection samples, >= 1.
        n: number of estimation samples, >= 1.
        alpha: one-sided failure probability of the certificate, in (0, 1).
        batch_size: samples per forward pass, >= 1.
        seed: seed of the ``torch.Generator`` on the model's device (recorded).
        num_classes: expected output columns; inferred from the model if None.
        top2: use the top-two certificate.
        device: device to sample on; default the model's (else ``x``'s) device.
        input_shape: if given, ``x.shape`` must equal it.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"cohen"`` (or
        ``"cohen_top2"``), the raw counts of both stages, and ``radius`` in units of x.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    n0 = check_int(n0, name="n0", minimum=1)
    n = check_int(n, name="n", minimum=1)
    sampling, sigma, alpha = _prepare(
        model,
        x,
        sigma=sigma,
        alpha=alpha,
        batch_size=batch_size,
        seed=seed,
        num_classes=num_classes,
        device=device,
        input_shape=input_shape,
        autocast_dtype=autocast_dtype,
    )
    counts_sel = sampling.counts(n0)
    top = int(np.argmax(counts_sel))
    counts_est = sampling.counts(n)
    p_upper: float | None = None
    if top2:
        p_lower = float(clopper_pearson_lower(counts_est[top], n, alpha=alpha / 2))
        p_upper = min(runner_up_upper(counts_est, top, alpha=alpha / 2), 1.0 - p_lower)
        radius = float(gaussian_radius_top2(p_lower, p_upper, sigma=sigma))
        certified = p_lower > p_upper and radius > 0
    else:
        p_lower = float(clopper_pearson_lower(counts_est[top], n, alpha=alpha))
        radius = float(gaussian_radius(p_lower, sigma=sigma))
        certified = p_lower > 0.5 and radius > 0
    return CertifyResult(
        method="cohen_top2" if top2 else "cohen",
        prediction=top if certified else None,
        abstained=not certified,
        radius=radius if certified else 0.0,
        p_lower=p_lower,
        p_upper=p_upper,
        n0=n0,
        n=n,
        alpha=alpha,
        seed=seed,
        seconds=time.perf_counter() - start,
        counts_selection=tuple(counts_sel.tolist()),
        counts_estimation=tuple(counts_est.tolist()),
        params={
            "sigma": sigma,
            "num_classes": sampling.classes,
            "batch_size": sampling.batch_size,
        },
    )


def predict(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    n: int,
    alpha: float,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Predict the smoothed class with Cohen et al.'s abstaining PREDICT.

    Counts the classes of n noisy samples; with ``n_A >= n_B`` the top two counts,
    runs a two-sided binomial test of ``n_A`` out of ``n_A + n_B`` against 1/2 and
    abstains when its p-value exceeds alpha. The probability of returning a class
    other than g(x) is at most alpha (Cohen et al. 2019, Proposition 1). No radius is
    certified (``radius = 0``).

    Args:
        model: as in :func:`certify`.
        x: one input, no batch axis.
        sigma: noise standard deviation, > 0, in units of ``x``.
        n: number of samples, >= 1.
        alpha: failure probability, in (0, 1).
        batch_size: samples per forward pass, >= 1.
        seed: generator seed (recorded).
        num_classes: expected output columns; inferred if None.
        device: device to sample on; default the model's device.
        input_shape: if given, ``x.shape`` must equal it.
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"cohen_predict"``,
        ``n0 = 0``, ``p_lower = 0`` and the test's p-value in ``params["p_value"]``.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    n = check_int(n, name="n", minimum=1)
    sampling, sigma, alpha = _prepare(
        model,
        x,
        sigma=sigma,
        alpha=alpha,
        batch_size=batch_size,
        seed=seed,
        num_classes=num_classes,
        device=device,
        input_shape=input_shape,
        autocast_dtype=autocast_dtype,
    )
    counts_est = sampling.counts(n)
    order = np.argsort(-counts_est, kind="stable")
    top, second = int(order[0]), int(order[1])
    n_a, n_b = int(counts_est[top]), int(counts_est[second])
    p_value = float(binomtest(n_a, n_a + n_b, 0.5).pvalue) if n_a + n_b > 0 else 1.0
    certified = p_value <= alpha
    return CertifyResult(
        method="cohen_predict",
        prediction=top if certified else None,
        abstained=not certified,
        radius=0.0,
        p_lower=0.0,
        n0=0,
        n=n,
        alpha=alpha,
        seed=seed,
        seconds=time.perf_counter() - start,
        counts_selection=(),
        counts_estimation=tuple(counts_est.tolist()),
        params={
            "sigma": sigma,
            "num_classes": sampling.classes,
            "batch_size": sampling.batch_size,
            "p_value": p_value,
        },
    )
