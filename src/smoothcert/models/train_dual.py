"""Training the sigma estimator of dual randomized smoothing.

Dual randomized smoothing (Sun, Mao and Vechev, "Dual Randomized Smoothing: Beyond
Global Noise Variance", arXiv 2512.01782) lets each input pick its noise level from a
finite set ``sigmas = (s_1 < ... < s_m)``: a sigma estimator ``h(x) -> j`` is itself
smoothed at one global level ``sigma_e >= s_m``, and the classifier (or the expert
trained at ``s_j``) smoothed at ``s_j`` certifies the class. This module trains ``h``
for the bundled ``fmnist_cnn`` experts (Sec. 5 of the paper):

1. Labels (:func:`sigma_radius_labels`): for every training input and every sigma,
   the certified L2 radius of the TRUE class under expert ``j`` at ``s_j`` with a cheap
   budget (``n = 100`` samples, Clopper-Pearson at ``alpha = 0.001``), 0 where it is not
   certified. Inputs whose radius is 0 at every sigma carry no information about which
   sigma is best and are dropped (:func:`kept_rows`).
2. Soft labels (:func:`soft_radius_labels`): ``softmax(radii / temperature)``.
3. Re-weighting (:func:`optimal_sigma_weights`): each kept input is weighted by the
   inverse frequency of its optimal sigma (``argmax`` radius) in the kept set, so a
   sigma that is rarely optimal is not ignored.
4. Training (:func:`train_estimator`): the estimator sees inputs with Gaussian noise at
   ``sigma_e`` (the noise it is smoothed with at certification) and minimises the
   weighted cross-entropy to the soft labels plus the consistency regulariser of
   Jeong and Shin ("Consistency Regularization for Certified Robustness of Smoothed
   Classifiers", NeurIPS 2020, arXiv 2006.04062): with ``m`` noise draws per input and
   ``p_hat`` the mean of their softmax outputs,
   ``lambda * mean_k KL(p_hat || p_k) + eta * H(p_hat)``. The consistency term makes
   the estimator's vote stable under noise, so its smoothed version certifies larger
   radii ``R_sigma``.

:func:`train_sigma_estimator` runs all four for ``fmnist_sigma_estimator`` and saves
the weights (``smoothcert train --model fmnist_sigma_estimator``). All sigmas and radii
are in [0, 1]-pixel units.

Example:
    >>> import numpy as np
    >>> radii = np.array([[0.2, 0.5, 0.1], [0.0, 0.0, 0.0], [0.3, 0.0, 0.0]])
    >>> kept_rows(radii).tolist()
    [True, False, True]
    >>> soft_radius_labels(radii[[0, 2]], temperature=0.1).round(3).tolist()
    [[0.047, 0.936, 0.017], [0.909, 0.045, 0.045]]
    >>> optimal_sigma_weights(radii[[0, 2]]).tolist()
    [1.0, 1.0, 0.0]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional

from smoothcert._validation import check_int, check_positive
from smoothcert.certificates.gaussian import gaussian_radius
from smoothcert.data import load_dataset
from smoothcert.errors import InvalidParameterError
from smoothcert.models.architectures import get_model_spec
from smoothcert.noise import GaussianNoise
from smoothcert.sampling.device import check_device
from smoothcert.sampling.multi import count_classes_many
from smoothcert.stats.binomial import clopper_pearson_lower

__all__ = [
    "DUAL_SIGMAS",
    "ESTIMATOR_BATCH_SIZE",
    "ESTIMATOR_EPOCHS",
    "ESTIMATOR_LR",
    "ESTIMATOR_NAME",
    "CALIBRATION_EXAMPLES",
    "CONSISTENCY_DRAWS",
    "CONSISTENCY_ETA",
    "CONSISTENCY_LAMBDA",
    "LABEL_ALPHA",
    "LABEL_N",
    "SIGMA_E",
    "SOFT_LABEL_TEMPERATURE",
    "TRAIN_EXAMPLES",
    "consistency_loss",
    "estimator_agreement",
    "estimator_loss",
    "kept_rows",
    "optimal_sigma_weights",
    "sigma_radius_labels",
    "soft_radius_labels",
    "split_radii",
    "train_estimator",
    "train_sigma_estimator",
]

ESTIMATOR_NAME = "fmnist_sigma_estimator"
"""Registered name of the bundled sigma estimator."""

EXPERT_NAME = "fmnist_cnn"
"""Expert family the bundled estimator routes to (one expert per sigma)."""

DUAL_SIGMAS: tuple[float, ...] = (0.25, 0.5, 1.0)
"""Noise levels the estimator chooses from (output ``j`` means ``DUAL_SIGMAS[j]``), as
in the paper, in [0, 1]-pixel units."""

SIGMA_E = 1.0
"""Noise level the estimator is trained and smoothed at (``sigma_e >= max(sigmas)``;
the paper's value)."""

LABEL_N = 100
"""Noisy samples per input and sigma for the training labels (the paper's cheap budget)."""

LABEL_ALPHA = 0.001
"""Clopper-Pearson level of the training labels (one-sided)."""

SOFT_LABEL_TEMPERATURE = 0.1
"""Temperature of ``softmax(radii / T)``, in [0, 1]-pixel units of radius. Chosen here
(not found in the paper's text available to us): with ``n = 100`` and ``alpha = 0.001``
the largest radius is ``1.50 sigma`` (0.375, 0.75, 1.5 for the three sigmas), so a
radius gap of 0.1 weighs e : 1 and a gap of 0.3 (typical between adjacent sigmas)
about 20 : 1: the label clearly prefers the best sigma yet keeps a near-tie soft."""

CONSISTENCY_DRAWS = 2
"""Noise draws per input per step (``m`` of Jeong and Shin 2020; their default 2)."""

CONSISTENCY_LAMBDA = 5.0
"""Weight of the KL term of the consistency regulariser (Jeong and Shin 2020 use 5 to
20 on CIFAR-10; 5, the lowest, keeps the soft-label fit dominant here)."""

CONSISTENCY_ETA = 0.5
"""Weight of the entropy of the mean prediction (their 0.5)."""

TRAIN_EXAMPLES = 8000
"""First training-split inputs the labels are computed on by default: 3 sigmas x 100
samples each is 2.4 million expert forward passes, about 16 minutes of one CPU core
(about 2,500 FashionCNN forwards per second). Pass ``train_examples`` for more."""

CALIBRATION_EXAMPLES = 1000
"""First calibration-split inputs the estimator's agreement with the argmax-radius
labels is measured on (same label computation)."""

ESTIMATOR_EPOCHS = 20
"""Passes over the kept training inputs."""

ESTIMATOR_BATCH_SIZE = 128
"""Inputs per step (each with :data:`CONSISTENCY_DRAWS` noise draws)."""

ESTIMATOR_LR = 2e-3
"""Peak learning rate of the one-cycle schedule (Adam)."""

FloatArray = NDArray[np.float64]


def _noise_seed(seed: int, sigma_index: int, example: int) -> int:
    """Seed of the noise of one (sigma, input) pair: independent of the grouping."""
    state = np.random.SeedSequence([seed, sigma_index, example]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def _as_float_tensor(images: Any) -> torch.Tensor:
    """A float32 CPU copy of images given as a tensor or an array."""
    if isinstance(images, torch.Tensor):
        return images.detach().to("cpu", torch.float32).clone()
    return torch.from_numpy(np.array(images, dtype=np.float32))


def _check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    out = tuple(check_positive(s, name="sigma") for s in sigmas)
    if len(out) < 2 or any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise InvalidParameterError(
            f"sigmas = {tuple(sigmas)!r} is invalid; valid: at least two strictly increasing "
            "positive noise levels"
        )
    return out


def sigma_radius_labels(
    experts: Sequence[nn.Module],
    sigmas: Sequence[float],
    images: Any,
    labels: Any,
    *,
    n: int = LABEL_N,
    alpha: float = LABEL_ALPHA,
    seed: int = 0,
    batch_size: int = 100,
    examples_per_batch: int = 20,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> FloatArray:
    """Certified radius of the true class of each input at each sigma (training labels).

    For input ``i`` and sigma ``j``: draw ``n`` samples ``x_i + N(0, sigmas[j]^2 I)``,
    count the votes of ``experts[j]``, bound ``p = P(expert_j(x_i + e) = y_i)`` from
    below with Clopper-Pearson at level ``alpha`` (``p_lower``), and set the radius to
    ``sigmas[j] * Phi^-1(p_lower)`` if ``p_lower > 1/2``, else 0 (Cohen et al. 2019,
    Theorem 1; the label is not a certificate of anything, only a training target, Sun,
    Mao and Vechev 2025, arXiv 2512.01782, Sec. 5). Only the true class counts: an input
    whose majority class is wrong gets radius 0 at that sigma. Many inputs share each
    forward pass (:func:`smoothcert.sampling.multi.count_classes_many`). Deterministic
    given ``seed``: the noise of (input ``i``, sigma ``j``) comes from its own generator
    seeded with ``SeedSequence([seed, j, i])``, so the result does not depend on
    ``examples_per_batch``.

    Args:
        experts: one model per sigma (``experts[j]`` is evaluated at ``sigmas[j]``);
            each maps ``(B, *x.shape)`` pixels to ``(B, num_classes)`` scores, in eval
            mode on ``device``. Pass the same model ``m`` times to use one classifier.
        sigmas: strictly increasing noise levels, in [0, 1]-pixel units.
        images: array or tensor ``(N, C, H, W)`` of clean inputs (pixels in [0, 1]).
        labels: integer array ``(N,)`` of true classes.
        n: samples per input and sigma (>= 1).
        alpha: one-sided Clopper-Pearson level, in (0, 1).
        seed: noise seed (>= 0).
        batch_size: samples per input per forward pass (>= 1).
        examples_per_batch: inputs that share a forward pass (>= 1); a forward pass has
            up to ``examples_per_batch * batch_size`` rows.
        device: torch device of the experts and the noise.
        log: optional callback receiving a progress line per sigma.

    Returns:
        float64 array ``(N, m)`` of radii (>= 0, in [0, 1]-pixel units); the largest
        possible value is ``sigmas[j] * Phi^-1(alpha ** (1 / n))`` (1.50 sigma for
        ``n = 100``, ``alpha = 0.001``).

    Raises:
        InvalidParameterError: for mismatched lengths, bad sigmas or other arguments
            out of range, or a label outside the experts' classes.

    Example:
        >>> import torch
        >>> class Always(torch.nn.Module):  # always votes class 1 of 2
        ...     def forward(self, x):
        ...         return torch.tensor([0.0, 1.0]).expand(x.shape[0], 2)
        >>> sigma_radius_labels([Always(), Always()], (0.5, 1.0), torch.zeros(2, 1, 2, 2),
        ...                     [1, 0], n=100, alpha=0.001).round(4).tolist()
        [[0.7502, 1.5005], [0.0, 0.0]]
    """
    sigmas = _check_sigmas(sigmas)
    if len(experts) != len(sigmas):
        raise InvalidParameterError(
            f"len(experts) = {len(experts)} is invalid; valid: one expert per sigma ({len(sigmas)})"
        )
    n = check_int(n, name="n", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    examples_per_batch = check_int(examples_per_batch, name="examples_per_batch", minimum=1)
    dev = check_device(device)
    x_all = _as_float_tensor(images).to(dev)
    y_all = np.asarray(labels, dtype=np.int64)
    if x_all.ndim < 2 or y_all.shape != (x_all.shape[0],):
        raise InvalidParameterError(
            f"images of shape {tuple(x_all.shape)} and labels of shape {y_all.shape} are "
            "invalid; valid: images (N, ...) and labels (N,)"
        )
    num = int(x_all.shape[0])
    radii = np.zeros((num, len(sigmas)), dtype=np.float64)
    if num == 0:
        return radii
    for j, (expert, sigma) in enumerate(zip(experts, sigmas, strict=True)):
        kernel = GaussianNoise(sigma)
        start_time = time.perf_counter()
        for start in range(0, num, examples_per_batch):
            stop = min(num, start + examples_per_batch)
            samplers = []
            for i in range(start, stop):
                gen = torch.Generator(device=dev).manual_seed(_noise_seed(seed, j, i))
                samplers.append(
                    lambda b, x=x_all[i], g=gen, k=kernel: (k.sample(x, b, generator=g),)
                )
            with torch.inference_mode():
                probe = expert(x_all[start : start + 1])
            counts = count_classes_many(
                expert,
                samplers,
                n,
                num_classes=int(probe.shape[1]),
                batch_size=batch_size,
                device=dev,
            )
            y = y_all[start:stop]
            if y.min() < 0 or y.max() >= counts.shape[1]:
                raise InvalidParameterError(
                    f"labels in [{y.min()}, {y.max()}] are invalid; valid: 0 <= label < "
                    f"{counts.shape[1]} (the experts' classes)"
                )
            p_lower = clopper_pearson_lower(counts[np.arange(stop - start), y], n, alpha=alpha)
            radii[start:stop, j] = gaussian_radius(p_lower, sigma=sigma)
        if log is not None:
            log(
                f"labels at sigma={sigma!r}: {num} inputs x {n} samples in "
                f"{time.perf_counter() - start_time:.1f} s"
            )
    return radii


def kept_rows(radii: Any) -> NDArray[np.bool_]:
    """Mask of the inputs with a positive radius at some sigma (the others are dropped).

    Example:
        >>> kept_rows([[0.0, 0.1], [0.0, 0.0]]).tolist()
        [True, False]
    """
    r = np.asarray(radii, dtype=np.float64)
    return np.asarray((r > 0).any(axis=1), dtype=np.bool_)


def soft_radius_labels(radii: Any, *, temperature: float = SOFT_LABEL_TEMPERATURE) -> FloatArray:
    """Soft labels ``softmax(radii / temperature)`` over the sigmas, one row per input.

    Rows sum to 1 and keep the order of the radii (a larger radius gets a larger
    probability; equal radii equal probabilities).

    Args:
        radii: array ``(N, m)`` of radii (from :func:`sigma_radius_labels`), usually of
            the kept rows only.
        temperature: > 0, in radius units (:data:`SOFT_LABEL_TEMPERATURE`).

    Returns:
        float64 array ``(N, m)``.

    Example:
        >>> soft_radius_labels([[0.0, 0.0], [0.1, 0.0]], temperature=0.1).round(4).tolist()
        [[0.5, 0.5], [0.7311, 0.2689]]
    """
    temperature = check_positive(temperature, name="temperature")
    z = np.asarray(radii, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def optimal_sigma_weights(radii: Any) -> FloatArray:
    """Per-sigma weight, the normalised inverse frequency of each sigma being optimal.

    The optimal sigma of an input is ``argmax_j radii[i, j]`` (ties go to the smaller
    sigma). With ``f_j`` the fraction of inputs whose optimal sigma is ``j``, the weight
    is ``w_j = 1 / (k * f_j)`` where ``k`` is the number of sigmas that are optimal for
    some input, and 0 for a sigma optimal for none; so the average weight over the
    inputs is 1 and each optimal sigma carries the same total weight. Pass the kept
    rows only.

    Returns:
        float64 array ``(m,)``.

    Example:
        >>> optimal_sigma_weights([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]).tolist()
        [0.6666666666666666, 2.0]
    """
    r = np.asarray(radii, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] == 0:
        raise InvalidParameterError(
            f"radii of shape {r.shape} is invalid; valid: (N, m) with N >= 1"
        )
    best = r.argmax(axis=1)
    freq = np.bincount(best, minlength=r.shape[1]) / r.shape[0]
    present = freq > 0
    weights = np.zeros(r.shape[1], dtype=np.float64)
    weights[present] = 1.0 / (int(present.sum()) * freq[present])
    return weights


def consistency_loss(
    logits: torch.Tensor, *, lam: float = CONSISTENCY_LAMBDA, eta: float = CONSISTENCY_ETA
) -> torch.Tensor:
    """Consistency regulariser of Jeong and Shin (2020, arXiv 2006.04062, Sec. 3).

    Args:
        logits: ``(m, B, K)`` logits of ``m`` noise draws of each of ``B`` inputs.
        lam: weight of the KL term.
        eta: weight of the entropy of the mean prediction.

    Returns:
        Scalar: ``mean_b [ lam * mean_k KL(p_hat_b || p_kb) + eta * H(p_hat_b) ]`` where
        ``p_kb = softmax(logits[k, b])`` and ``p_hat_b = mean_k p_kb``.
    """
    log_p = functional.log_softmax(logits, dim=-1)
    p_hat = log_p.exp().mean(dim=0)
    log_p_hat = torch.log(p_hat.clamp_min(1e-12))
    kl = (p_hat.unsqueeze(0) * (log_p_hat.unsqueeze(0) - log_p)).sum(dim=-1).mean(dim=0)
    entropy = -(p_hat * log_p_hat).sum(dim=-1)
    return (lam * kl + eta * entropy).mean()


def estimator_loss(
    logits: torch.Tensor,
    soft: torch.Tensor,
    weights: torch.Tensor,
    *,
    lam: float = CONSISTENCY_LAMBDA,
    eta: float = CONSISTENCY_ETA,
) -> torch.Tensor:
    """Training loss of the estimator: weighted soft cross-entropy plus consistency.

    Args:
        logits: ``(m, B, K)`` logits of ``m`` noise draws (at ``sigma_e``) of ``B`` inputs.
        soft: ``(B, K)`` soft labels (:func:`soft_radius_labels`).
        weights: ``(B,)`` per-input weights (:func:`optimal_sigma_weights` of each
            input's optimal sigma).
        lam: weight of the KL term of :func:`consistency_loss`.
        eta: weight of its entropy term (``lam = eta = 0``: plain soft cross-entropy).

    Returns:
        Scalar: ``mean_b w_b * mean_k CE(soft_b, logits[k, b]) + consistency``.
    """
    ce = -(soft.unsqueeze(0) * functional.log_softmax(logits, dim=-1)).sum(dim=-1).mean(dim=0)
    loss = (weights * ce).mean()
    if lam > 0 or eta > 0:
        loss = loss + consistency_loss(logits, lam=lam, eta=eta)
    return loss


def train_estimator(
    model: nn.Module,
    images: Any,
    radii: Any,
    *,
    sigma_e: float = SIGMA_E,
    epochs: int = ESTIMATOR_EPOCHS,
    batch_size: int = ESTIMATOR_BATCH_SIZE,
    lr: float = ESTIMATOR_LR,
    temperature: float = SOFT_LABEL_TEMPERATURE,
    draws: int = CONSISTENCY_DRAWS,
    lam: float = CONSISTENCY_LAMBDA,
    eta: float = CONSISTENCY_ETA,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a sigma estimator in place on noisy inputs against radius soft labels.

    Drops the inputs with radius 0 at every sigma, builds the soft labels and the
    inverse-frequency weights of the optimal sigma, and runs Adam with a one-cycle
    schedule on :func:`estimator_loss`, each step drawing ``draws`` fresh
    ``N(0, sigma_e^2)`` noises per input (unclipped pixels in [0, 1], the noise the
    estimator is smoothed with at certification).

    Args:
        model: the estimator (``(B, C, H, W)`` -> ``(B, m)`` logits), on the device it
            trains on; left in eval mode.
        images: ``(N, C, H, W)`` clean training inputs.
        radii: ``(N, m)`` radii from :func:`sigma_radius_labels`.
        sigma_e: training noise of the estimator (> 0), in [0, 1]-pixel units.
        epochs: passes over the kept inputs (>= 1).
        batch_size: inputs per step (>= 1); a forward pass has ``draws`` times as many rows.
        lr: peak learning rate of the one-cycle schedule (> 0).
        temperature: soft-label temperature.
        draws: noise draws per input per step (>= 1; the consistency term needs >= 2).
        lam: weight of the KL term of the consistency regulariser (0 switches it off;
            ignored with ``draws = 1``).
        eta: weight of its entropy term.
        seed: seed of the batch order and the noise.
        log: optional callback receiving one line per epoch.

    Returns:
        A dict with ``kept`` (inputs used), ``dropped``, ``optimal_fraction`` (list,
        fraction of kept inputs whose optimal sigma is each index), ``class_weights``,
        ``final_loss`` (mean loss of the last epoch) and ``first_loss`` (of the first).

    Raises:
        InvalidParameterError: for arguments out of range, or if no input is kept.
    """
    sigma_e = check_positive(sigma_e, name="sigma_e")
    epochs = check_int(epochs, name="epochs", minimum=1)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    lr = check_positive(lr, name="lr")
    draws = check_int(draws, name="draws", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    for value, label in ((lam, "lam"), (eta, "eta")):
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise InvalidParameterError(f"{label} = {value!r} is invalid; valid: a finite >= 0")
    r = np.asarray(radii, dtype=np.float64)
    keep = kept_rows(r)
    if not keep.any():
        raise InvalidParameterError(
            "radii are 0 for every input at every sigma; valid: at least one input "
            "certified at some sigma (nothing to learn from)"
        )
    r_kept = r[keep]
    soft_np = soft_radius_labels(r_kept, temperature=temperature)
    class_w = optimal_sigma_weights(r_kept)
    first = next(iter(model.parameters()))
    device, dtype = first.device, first.dtype
    x = _as_float_tensor(images)[torch.from_numpy(keep)].to(device=device, dtype=dtype)
    soft = torch.as_tensor(soft_np, dtype=dtype, device=device)
    weights = torch.as_tensor(class_w[r_kept.argmax(axis=1)], dtype=dtype, device=device)
    num = int(x.shape[0])
    order_seed, noise_seed = (
        int(s >> np.uint64(1))
        for s in np.random.SeedSequence([seed, 7]).generate_state(2, np.uint64)
    )
    order_gen = torch.Generator().manual_seed(order_seed)
    noise_gen = torch.Generator(device=device).manual_seed(noise_seed)
    steps = (num + batch_size - 1) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps)
    losses: list[float] = []
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(num, generator=order_gen).to(device)
        total = torch.zeros((), device=device, dtype=torch.float64)
        for start in range(0, num, batch_size):
            idx = perm[start : start + batch_size]
            xb = x[idx]
            noise = torch.randn((draws, *xb.shape), generator=noise_gen, device=device, dtype=dtype)
            noisy = (xb.unsqueeze(0) + sigma_e * noise).flatten(0, 1)
            logits = model(noisy).view(draws, idx.numel(), -1)
            loss = estimator_loss(
                logits, soft[idx], weights[idx], lam=lam if draws > 1 else 0.0, eta=eta
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += loss.detach().double() * idx.numel()
        losses.append(float(total.item()) / num)
        if log is not None:
            log(f"estimator epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f}")
    model.eval()
    best = r_kept.argmax(axis=1)
    return {
        "kept": num,
        "dropped": int((~keep).sum()),
        "optimal_fraction": [
            round(float(v), 4) for v in np.bincount(best, minlength=r.shape[1]) / num
        ],
        "class_weights": [round(float(v), 4) for v in class_w],
        "first_loss": losses[0],
        "final_loss": losses[-1],
    }


def estimator_agreement(
    model: nn.Module,
    images: Any,
    radii: Any,
    *,
    sigma_e: float = SIGMA_E,
    votes: int = 1,
    seed: int = 0,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Agreement of the estimator on noisy inputs with the argmax-radius labels.

    Only inputs with a positive radius at some sigma are scored (the others have no
    optimal sigma). With ``votes = 1`` each input gets one noise draw at ``sigma_e``;
    with more, the majority over ``votes`` draws (a Monte Carlo estimate of the
    smoothed estimator's choice, no certificate).

    Returns:
        ``{"examples": scored inputs, "agreement": fraction equal to the label,
        "predicted_fraction": fraction predicted per sigma index}``.
    """
    votes = check_int(votes, name="votes", minimum=1)
    r = np.asarray(radii, dtype=np.float64)
    keep = kept_rows(r)
    first = next(iter(model.parameters()))
    device, dtype = first.device, first.dtype
    x = _as_float_tensor(images)[torch.from_numpy(keep)].to(device=device, dtype=dtype)
    target = r[keep].argmax(axis=1)
    m = r.shape[1]
    gen = torch.Generator(device=device).manual_seed(seed)
    counts = torch.zeros(x.shape[0], m, dtype=torch.int64, device=device)
    rows = torch.arange(x.shape[0], device=device).repeat_interleave(votes)
    with torch.inference_mode():
        for start in range(0, rows.numel(), batch_size):
            sel = rows[start : start + batch_size]
            xb = x[sel]
            noise = torch.randn(xb.shape, generator=gen, device=device, dtype=dtype)
            pred = model(xb + sigma_e * noise).argmax(dim=1)
            counts.index_put_((sel, pred), torch.ones_like(pred), accumulate=True)
    choice = counts.argmax(dim=1).cpu().numpy()
    return {
        "examples": int(x.shape[0]),
        "agreement": float((choice == target).mean()) if x.shape[0] else float("nan"),
        "predicted_fraction": [
            round(float(v), 4) for v in np.bincount(choice, minlength=m) / max(1, x.shape[0])
        ],
    }


def _labels_cached(
    cache_dir: Path | None,
    key: dict[str, Any],
    compute: Callable[[], FloatArray],
) -> tuple[FloatArray, float]:
    """Compute radii or reuse a cached ``.npy`` computed with exactly the same settings.

    Returns the radii and the seconds their computation took (recorded in the cache's
    ``.json`` sidecar, so a reused cache reports the original cost).
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = None if cache_dir is None else cache_dir / f"dual_radii_{key['split']}_{digest}.npy"
    if path is not None and path.exists() and path.with_suffix(".json").exists():
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        return np.asarray(np.load(path), dtype=np.float64), float(meta["seconds"])
    start = time.perf_counter()
    radii = compute()
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
        np.save(tmp, radii)
        os.replace(tmp, path)
        meta = {**key, "seconds": round(seconds, 1), "threads": torch.get_num_threads()}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return radii, seconds


def split_radii(
    experts: Sequence[nn.Module],
    sigmas: Sequence[float],
    *,
    split: str,
    examples: int,
    n: int = LABEL_N,
    alpha: float = LABEL_ALPHA,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[FloatArray, NDArray[np.float32], float]:
    """Radii (:func:`sigma_radius_labels`) of the first ``examples`` inputs of a split.

    Args:
        experts: one Fashion-MNIST expert per sigma (with ``weights_sha256`` when loaded
            by :func:`~smoothcert.models.load_model`; it keys the cache).
        sigmas: their noise levels.
        split: a split of ``fashion_mnist`` (``"train"``, ``"calibration"``, ``"test"``).
        examples: number of inputs (the first ones of the split; >= 1).
        n: samples per input and sigma, as :func:`sigma_radius_labels`.
        alpha: Clopper-Pearson level, as :func:`sigma_radius_labels`.
        seed: noise seed; a split other than ``"train"`` uses ``seed + 1``, so it does
            not reuse the training noise.
        cache_dir: optional directory where the radii are saved as ``.npy`` under a hash
            of all these settings and the experts' sha256, and reused when present.
        log: optional progress callback.

    Returns:
        ``(radii (examples, m), images (examples, 1, 28, 28), seconds)``, ``seconds``
        being the compute time of the radii (that of the original computation when
        they come from the cache).
    """
    examples = check_int(examples, name="examples", minimum=1)
    data = load_dataset(get_model_spec(ESTIMATOR_NAME).dataset, split)
    count = min(examples, len(data))
    images = np.ascontiguousarray(data.images[:count], dtype=np.float32)
    labels = np.asarray(data.labels[:count], dtype=np.int64)
    noise_seed = seed if split == "train" else seed + 1
    key = {
        "split": split,
        "examples": count,
        "sigmas": [float(s) for s in sigmas],
        "experts": [str(getattr(e, "weights_sha256", type(e).__name__)) for e in experts],
        "n": n,
        "alpha": alpha,
        "seed": noise_seed,
        "batch_size": 100,
    }

    def compute() -> FloatArray:
        return sigma_radius_labels(
            experts, sigmas, images, labels, n=n, alpha=alpha, seed=noise_seed, log=log
        )

    radii, seconds = _labels_cached(None if cache_dir is None else Path(cache_dir), key, compute)
    if log is not None:
        log(f"radii of {count} {split} inputs: {seconds:.1f} s of compute")
    return radii, images, seconds


def _estimator_from_expert(expert: nn.Module | None, seed: int) -> nn.Module:
    """A fresh estimator, its convolutions and hidden layer copied from ``expert``."""
    spec = get_model_spec(ESTIMATOR_NAME)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.build()
    if expert is not None:
        state = {k: v for k, v in expert.state_dict().items() if not k.startswith("fc2.")}
        model.load_state_dict(state, strict=False)
    return model


def train_sigma_estimator(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    train_examples: int = TRAIN_EXAMPLES,
    calibration_examples: int = CALIBRATION_EXAMPLES,
    epochs: int = ESTIMATOR_EPOCHS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
    init_from_expert: bool = True,
    consistency_lambda: float = CONSISTENCY_LAMBDA,
    consistency_eta: float = CONSISTENCY_ETA,
    experts_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train ``fmnist_sigma_estimator`` end to end and save its weights (``smoothcert train``).

    Loads the three bundled ``fmnist_cnn`` experts (sigma 0.25, 0.5, 1.0), computes the
    radius labels (:func:`split_radii`) of the first ``train_examples`` training inputs
    and of the first ``calibration_examples`` calibration inputs, trains the estimator
    (:func:`train_estimator`, at ``sigma_e = 1.0``) starting from the sigma = 1.0
    expert's convolutions and hidden layer (``init_from_expert``; its last layer is new,
    3 outputs), measures its agreement with the argmax-radius labels on noisy
    calibration inputs (one draw, and a 25-vote majority), and saves the weights with
    :func:`~smoothcert.models.train.save_weights` under sigma = ``sigma_e`` with the
    manifest fields ``dual_sigmas`` (``[0.25, 0.5, 1.0]``; output ``j`` means
    ``dual_sigmas[j]``), ``experts`` and the training metadata. Deterministic for a
    given ``seed``, thread count and machine.

    With the defaults this takes about 25 minutes of one CPU core, mostly the labels
    (2.7 million expert forward passes).

    Args:
        out_dir: weights directory; ``None`` writes into the package's bundled weights.
        train_examples: first training inputs to label and train on (>= 1; the
            training split has 55,000; labels cost about 0.12 s of one core per input).
        calibration_examples: first calibration inputs to measure agreement on (>= 1).
        epochs: passes over the kept training inputs.
        seed: seed of the label noise, the initial last layer, the batch order and the
            training noise.
        device: torch device.
        threads: CPU threads torch uses (restored afterwards); ``None`` keeps the setting.
        init_from_expert: start from the sigma = 1.0 expert's weights except the last
            layer (default) rather than from a random initialisation.
        consistency_lambda: weight of the KL term of the consistency regulariser.
        consistency_eta: weight of its entropy term.
        experts_dir: weights directory of the experts (``None``: the bundled ones).
        cache_dir: optional directory to keep and reuse the computed radii.
        log: optional progress callback (e.g. ``print``).

    Returns:
        Path of the written weight file.

    Example:
        Quick and not for shipping (a few seconds; the defaults are what ships)::

            from smoothcert.models.train_dual import train_sigma_estimator
            train_sigma_estimator("/tmp/weights", train_examples=200,
                                  calibration_examples=100, epochs=1)
    """
    from smoothcert.models.loading import load_model
    from smoothcert.models.train import save_weights

    train_examples = check_int(train_examples, name="train_examples", minimum=1)
    calibration_examples = check_int(calibration_examples, name="calibration_examples", minimum=1)
    epochs = check_int(epochs, name="epochs", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    if threads is not None:
        threads = check_int(threads, name="threads", minimum=1)
    dev = check_device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        experts = [
            load_model(EXPERT_NAME, sigma=s, device=dev, weights_dir=experts_dir)
            for s in DUAL_SIGMAS
        ]
        radii, images, train_label_seconds = split_radii(
            experts,
            DUAL_SIGMAS,
            split="train",
            examples=train_examples,
            seed=seed,
            cache_dir=cache_dir,
            log=log,
        )
        cal_radii, cal_images, cal_label_seconds = split_radii(
            experts,
            DUAL_SIGMAS,
            split="calibration",
            examples=calibration_examples,
            seed=seed,
            cache_dir=cache_dir,
            log=log,
        )
        label_seconds = train_label_seconds + cal_label_seconds
        model = _estimator_from_expert(experts[-1] if init_from_expert else None, seed).to(dev)
        start = time.perf_counter()
        summary = train_estimator(
            model,
            images,
            radii,
            epochs=epochs,
            seed=seed,
            lam=consistency_lambda,
            eta=consistency_eta,
            log=log,
        )
        train_seconds = time.perf_counter() - start
        one = estimator_agreement(model, cal_images, cal_radii, seed=seed)
        vote = estimator_agreement(model, cal_images, cal_radii, seed=seed, votes=25)
    finally:
        torch.set_num_threads(previous_threads)
    cal_keep = kept_rows(cal_radii)
    cal_best = cal_radii[cal_keep].argmax(axis=1)
    metadata: dict[str, Any] = {
        "kind": "sigma_estimator",
        "dual_sigmas": list(DUAL_SIGMAS),
        "experts": {
            "model": EXPERT_NAME,
            "sha256": [str(getattr(e, "weights_sha256", "")) for e in experts],
        },
        "training": {
            "paper": "Sun, Mao and Vechev, Dual Randomized Smoothing, arXiv 2512.01782",
            "split": "train",
            "examples": int(radii.shape[0]),
            "kept": summary["kept"],
            "dropped": summary["dropped"],
            "optimal_sigma_fraction": summary["optimal_fraction"],
            "class_weights": summary["class_weights"],
            "label_n": LABEL_N,
            "label_alpha": LABEL_ALPHA,
            "soft_label_temperature": SOFT_LABEL_TEMPERATURE,
            "consistency": {
                "draws": CONSISTENCY_DRAWS,
                "lambda": consistency_lambda,
                "eta": consistency_eta,
            },
            "init": "fmnist_cnn sigma=1.0 except fc2" if init_from_expert else "random",
            "epochs": epochs,
            "batch_size": ESTIMATOR_BATCH_SIZE,
            "optimizer": "adam",
            "schedule": "one-cycle",
            "peak_lr": ESTIMATOR_LR,
            "seed": seed,
            "threads": threads,
            "label_seconds": round(train_label_seconds, 1),
            "calibration_label_seconds": round(cal_label_seconds, 1),
            "seconds": round(train_seconds, 1),
            "final_loss": round(summary["final_loss"], 4),
        },
        "calibration_examples": int(cal_radii.shape[0]),
        "calibration_kept": int(cal_keep.sum()),
        "calibration_optimal_sigma_fraction": [
            round(float(v), 4)
            for v in np.bincount(cal_best, minlength=len(DUAL_SIGMAS)) / max(1, cal_best.size)
        ],
        "calibration_agreement_noisy": round(one["agreement"], 4),
        "calibration_agreement_vote25": round(vote["agreement"], 4),
        "calibration_predicted_fraction_vote25": vote["predicted_fraction"],
    }
    path = save_weights(model, ESTIMATOR_NAME, SIGMA_E, out_dir, metadata=metadata)
    if log is not None:
        log(
            f"{ESTIMATOR_NAME}: labels {label_seconds:.1f} s, trained in {train_seconds:.1f} s "
            f"on {summary['kept']} inputs ({summary['dropped']} dropped; optimal sigma "
            f"fractions {summary['optimal_fraction']}); calibration agreement with the "
            f"argmax-radius label: noisy {one['agreement']:.3f}, 25-vote "
            f"{vote['agreement']:.3f} -> {path}"
        )
    return path
