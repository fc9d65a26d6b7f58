"""Hybrid text+image smoothing: certify a (tokens, image) pair jointly (Delattre et al. 2026).

Delattre et al., ICML 2026 (arXiv 2605.12876). The smoothed model sees the pair
``(Z, X + e)`` where ``Z`` is the token sequence after a token substitution kernel at
the eligible positions of a :mod:`~smoothcert.methods.threats` model
(:mod:`smoothcert.noise.tokens`; Lee et al. 2019, arXiv 1906.04948) and
``e ~ N(0, sigma^2 I)`` is Gaussian noise on the image, both drawn from one generator
(:class:`~smoothcert.noise.product.TokenImageNoise`). The attacker substitutes at most
``d`` eligible tokens (writing alphabet tokens) AND moves the image by ``delta`` with
``||delta||_2 <= r``; ``r`` is in the units of the image tensor (pixels in [0, 1] unless
the model normalises inside), ``d`` in tokens.

:func:`smoothcert.certificates.hybrid_lower_bound` gives ``L(d, r)``, the smallest
probability of the certified outcome over all such attacks given ``p_lower``, and
:func:`smoothcert.certificates.hybrid_radius_curve` the curve
``r(d) = sup{r : L(d, r) >= tau}``, ``d = 0..d_max`` (0 where nothing is certified). The
certified region is the staircase under ``r(d)``: every attack with at most ``d`` edits
and ``||delta||_2 < r(d)``.

Modes (as in :mod:`smoothcert.methods.tokens`):

- majority (``target=None``, ``tau = 1/2``): n0 selection samples choose the class,
  ``n`` fresh samples bound it; at ``d = 0`` the radius is Cohen's
  ``sigma * Phi^-1(p_lower)``.
- safety filter (``target`` given): the smoothed filter flags iff
  ``P(target) >= tau``; the pair is certified to stay flagged on the region where
  ``L(d, r) >= tau``. At ``d = 0``, ``r = sigma (Phi^-1(p_lower) - Phi^-1(tau))``.
  ``n0`` is ignored (no selection sample is drawn; the result records ``n0 = 0`` and
  ``params["n0_requested"]``). The robust certificate (the whole curve) fails with
  probability at most alpha; ``certified_not_flagged`` is a separate one-sided claim
  at level alpha; the flagged / not-flagged decision at the clean input errs with
  probability at most alpha; the curve and the not-flagged flag read jointly fail with
  probability at most 2 alpha (see :mod:`smoothcert.methods.tokens`).

Noise is drawn at all ``D`` eligible positions (shared sampling), so one ``p_lower``
holds for every ``d <= D`` at once; the whole curve fails with probability at most
alpha.

What is approximate (soundness rule 4): ``p_lower`` is the Clopper-Pearson bound minus
the token sampler's TV bound (``params["sampling_tv_bound"]``, see
:meth:`~smoothcert.noise.tokens.BoundTokenNoise.tv_bound`). The Gaussian image noise is
floating-point ``torch.randn`` (float32 for a float32 image) and is treated as exact
``N(0, sigma^2 I)``: it is NOT part of that TV correction.

Example:
    >>> import torch
    >>> class ImageOnly(torch.nn.Module):
    ...     def forward(self, toks, img):
    ...         z = img.flatten(1).sum(1)
    ...         return torch.stack([-z, z], dim=1)
    >>> res = certify(ImageOnly().eval(), torch.tensor([1, 2, 3]), torch.full((4,), 0.5),
    ...               sigma=0.5, beta=0.5, alphabet=5, n0=100, n=5000, alpha=0.001)
    >>> res.prediction, res.radius == res.radius_curve[0], len(res.radius_curve)
    (1, True, 4)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from smoothcert._validation import check_positive
from smoothcert.certificates import hybrid_radius_curve
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import (
    check_eval_mode,
    check_image,
    model_device,
    probe_num_classes,
)
from smoothcert.methods.threats import ThreatModel
from smoothcert.methods.tokens import (
    bound_class,
    certified_tokens,
    check_mode,
    check_placeholder,
    check_target,
    check_threat,
    run_stages,
)
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.product import TokenImageNoise
from smoothcert.noise.tokens import TokenSubstitutionNoise, check_tokens
from smoothcert.records import CertifyResult
from smoothcert.sampling.device import check_device
from smoothcert.sampling.engine import make_generator


def certify(
    model: Callable[..., torch.Tensor],
    tokens: torch.Tensor,
    image: torch.Tensor,
    *,
    sigma: float,
    beta: float,
    alphabet: Any = None,
    n0: int,
    n: int,
    alpha: float,
    threat: ThreatModel | None = None,
    kernel: str = "uniform",
    mask_id: int | None = None,
    tau: float = 0.5,
    target: int | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    image_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify a (tokens, image) pair against d substituted tokens and an L2 image ball.

    The certificate: with probability at least ``1 - alpha`` over the samples, for every
    ``d <= d_max`` and every attack with at most ``d`` substituted eligible tokens
    (alphabet tokens) and an image perturbation of L2 norm below ``radius_curve[d]``,
    the smoothed model still returns the class (majority mode) or still flags the pair
    (safety-filter mode, ``P(target) >= tau``).

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) taking token ids
            ``(B, L)`` (LongTensor) and images ``(B, *image.shape)`` and returning
            scores ``(B, num_classes)``.
        tokens: one sequence, 1-D integer tensor ``(L,)`` (no batch axis).
        image: one finite floating-point image (no batch axis).
        sigma: image noise standard deviation, > 0, in the units of ``image``.
        beta: token substitution probability per eligible position, in (0, 1).
        alphabet: the token kernel's alphabet (``V``, ids, or a boolean mask), V >= 2;
            optional for ``"mask"``.
        n0: selection samples, >= 1 in majority mode. Ignored in safety-filter mode
            (any value >= 0; no selection sample is drawn, the result records
            ``n0 = 0`` and ``params["n0_requested"]``).
        n: estimation samples, >= 1.
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        threat: eligible positions and ``d_max``
            (:mod:`~smoothcert.methods.threats`); default every position, ``d_max = L``.
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: mask token id (``"mask"`` kernel only).
        tau: threshold in (0, 1): 1/2 for majority vote, the flagging threshold of the
            safety filter otherwise.
        target: the fixed class of the safety filter, or None for majority vote.
        batch_size: samples per forward pass, >= 1.
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        num_classes: expected number of output columns; inferred if None.
        device: device to sample on; default the model's (else the image's) device.
        image_shape: if given, ``image.shape`` must equal it.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"hybrid"``,
        ``radius = r(0)`` (L2, image units), ``radius_curve`` the tuple
        ``r(0), ..., r(d_max)``, and params ``sigma``, ``beta``, ``vocab_size``,
        ``kernel``, ``tau``, ``target``, ``mode``, ``d_max``, ``num_eligible`` (D),
        the threat, and ``d_certified`` (largest d certified with an unperturbed
        image; ``-1`` if none).
        Safety-filter mode adds ``flag_rate`` (empirical P(target)), ``target_p_upper``
        (one-sided Clopper-Pearson upper bound at alpha), ``n0_requested`` and
        ``certified_not_flagged`` (``target_p_upper + sampling_tv_bound < tau``: the
        smoothed filter does NOT flag the clean input). Failure probabilities: the
        robust certificate (flagged, and stays flagged on the whole region under the
        curve) fails w.p. <= alpha; ``certified_not_flagged`` is a separate one-sided
        claim, wrong w.p. <= alpha; the decision flagged / not flagged at the clean
        input errs w.p. <= alpha; reading the curve and the not-flagged flag jointly
        fails w.p. <= 2 alpha. ``p_lower_cp`` and ``sampling_tv_bound`` record the raw
        Clopper-Pearson bound and the token kernel's correction: ``p_lower = max(0,
        p_lower_cp - sampling_tv_bound)`` (the Gaussian image noise is treated as
        exact and not included).

    Raises:
        InvalidParameterError: on any bad argument, before sampling: sigma <= 0, beta
            outside (0, 1), V < 2, tau outside (0, 1), d_max outside [0, D], tokens
            that are not a 1-D integer tensor or lie outside the alphabet at eligible
            positions, a NaN/Inf or non-float image, a batch axis on the tokens, a
            target outside the classes.
    """
    start = time.perf_counter()
    sigma = check_positive(sigma, name="sigma")
    token_noise = TokenSubstitutionNoise(
        beta=beta, alphabet=alphabet, kernel=kernel, mask_id=mask_id
    )
    mode = check_mode(
        tau=tau,
        target=target,
        n0=n0,
        n=n,
        alpha=alpha,
        batch_size=batch_size,
        seed=seed,
        num_classes=num_classes,
    )
    threat = check_threat(threat)
    if isinstance(tokens, torch.Tensor) and tokens.ndim != 1:
        raise InvalidParameterError(
            f"tokens.shape = {tuple(tokens.shape)} is invalid with image.shape = "
            f"{tuple(getattr(image, 'shape', ()))}; valid: tokens (L,) and one image, "
            "both without a batch axis"
        )
    tokens = check_tokens(tokens)
    check_image(image, name="image", input_shape=image_shape)
    check_eval_mode(model)
    dev = check_device(device) if device is not None else model_device(model, image.device)
    image = image.to(dev)
    applied = threat.apply(tokens.to(dev))
    check_placeholder(applied, token_noise)
    noise = TokenImageNoise(token_noise, GaussianNoise(sigma))
    bound = noise.bind(applied.tokens, image, applied.eligible)
    classes = probe_num_classes(
        model, (bound.tokens.tokens.unsqueeze(0), image.unsqueeze(0)), mode.num_classes
    )
    check_target(mode, classes)

    generator = make_generator(mode.seed, dev)

    def sampler(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        return bound.sample(b, generator=generator)

    counts_sel, counts_est = run_stages(
        model,
        sampler,
        mode,
        classes=classes,
        device=dev,
        autocast_dtype=autocast_dtype,
        clean_inputs=(bound.tokens.tokens.unsqueeze(0), image.unsqueeze(0)),
    )
    cls, p_lower, extra = bound_class(mode, counts_sel, counts_est, tv_bound=bound.tv_bound())
    d_cert = certified_tokens(
        p_lower,
        mode,
        d_max=applied.d_max,
        beta=token_noise.beta,
        vocab_size=token_noise.vocab_size,
        kernel=token_noise.kernel,
    )
    certified = d_cert >= 0
    curve = np.zeros(applied.d_max + 1, dtype=np.float64)
    if certified:
        curve = np.asarray(
            hybrid_radius_curve(
                p_lower,
                d_max=applied.d_max,
                sigma=sigma,
                beta=token_noise.beta,
                vocab_size=token_noise.vocab_size,
                tau=mode.tau,
                kernel=token_noise.kernel,
            ),
            dtype=np.float64,
        ).reshape(-1)
        # Staircase: nothing is certified past the first d that fails at r = 0.
        curve[d_cert + 1 :] = 0.0
        curve = np.where(np.isfinite(curve) & (curve > 0), curve, 0.0)
    return CertifyResult(
        method="hybrid",
        prediction=cls if certified else None,
        abstained=not certified,
        radius=float(curve[0]) if certified else 0.0,
        p_lower=p_lower,
        n0=mode.n0,
        n=mode.n,
        alpha=mode.alpha,
        seed=mode.seed,
        seconds=time.perf_counter() - start,
        counts_selection=tuple(counts_sel.tolist()),
        counts_estimation=tuple(counts_est.tolist()),
        radius_unit="l2",
        radius_curve=tuple(curve.tolist()),
        params={
            "sigma": sigma,
            **token_noise.params(),
            **mode.params(),
            **applied.threat.params(),
            "d_max": applied.d_max,
            "num_eligible": applied.num_eligible,
            "d_certified": d_cert,
            "length": int(applied.tokens.numel()),
            "image_shape": list(image.shape),
            "sampling": "shared",
            "selected_class": cls,
            "num_classes": classes,
            "batch_size": mode.batch_size,
            **extra,
        },
    )
