"""Joint token + image attack on a smoothed text+image safety filter (``attack-hybrid``).

The filter is the one ``hybrid`` certifies (:mod:`smoothcert.methods.hybrid`: the token
kernel on the eligible positions times ``N(0, sigma^2 I)`` on the image; flagged iff
``P(target) >= tau``). At each grid point ``(d, r)`` the attacker tries to UN-flag a
flagged pair with at most ``d`` substituted eligible tokens (alphabet tokens) and an image
perturbation ``||delta||_2 <= r`` (pixel box [0, 1] kept):

1. tokens, greedy coordinate search (:func:`~smoothcert.methods._attack_search.greedy_edits`):
   ``d`` times, score ``candidates`` (position, alphabet token) substitutions at not yet
   edited eligible positions -- random ones, or with ``candidate_ranking="gradient"`` the
   top ones by the first-order change of the smoothed score from the embedding gradient
   (GCG-style, :mod:`smoothcert.methods.token_gradient`; the model needs the embedding
   hook) -- plus "no change", by
   the Monte Carlo smoothed score ``mean_j P(target | Z_j, X + e_j)`` over ``noise_samples``
   joint noise draws (the same draws for every candidate: common random numbers), and keep
   the lowest;
2. image: L2 PGD on ``log mean_j softmax(f(Z_j, X' + e_j))_target`` with those tokens
   (as :func:`smoothcert.methods.attack.smoothed_pgd`, with token noise too).

Then ``n`` FRESH noisy samples at the attacked pair give the counts of one ``attack`` stage
per point; :mod:`smoothcert.decisions.attack_hybrid` decides. All randomness (candidates,
noise) comes from the input's ``torch.Generator``.

Example:
    >>> import torch
    >>> class Bright(torch.nn.Module):  # flags (class 1) bright images
    ...     def forward(self, toks, img):
    ...         z = 4 * (img.flatten(1).mean(1) - 0.5)
    ...         return torch.stack([-z, z], dim=1)
    >>> res = attack_hybrid(Bright().eval(), torch.tensor([1, 2, 3]), torch.full((4,), 0.8),
    ...                     sigma=0.1, beta=0.1, alphabet=5, target=1, tau=0.5,
    ...                     radii=(0.2, 1.0), attack_d_max=0, n=500, steps=10, seed=0)
    >>> res.prediction, res.details.unflagged
    (1, (False, True))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from smoothcert.decisions.attack_hybrid import (
    HybridAttackFacts,
    HybridAttackParams,
    decide_attack_hybrid,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._attack_search import (
    attack_plan,
    greedy_edits,
    joint_objective,
    l2_pgd,
)
from smoothcert.methods._common import check_image, model_device
from smoothcert.methods._tokens_common import (
    check_target,
    kernel_for,
    params_from_arguments,
    threat_of,
    token_noise,
)
from smoothcert.methods.sampler import Prepared, Sampler, draw
from smoothcert.methods.threats import ThreatModel
from smoothcert.methods.token_gradient import gradient_candidates, has_embedding_hook
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.product import TokenImageNoise
from smoothcert.noise.tokens import check_tokens
from smoothcert.records import CertifyResult, Evidence
from smoothcert.sampling.device import check_device


def attack_pair(
    model: Callable[..., torch.Tensor],
    kernel: TokenImageNoise,
    tokens: torch.Tensor,
    image: torch.Tensor,
    eligible: torch.Tensor,
    alphabet: torch.Tensor,
    *,
    d: int,
    radius: float,
    params: HybridAttackParams,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked pair at one grid point (see the module docstring).

    Args:
        model: eval-mode model ``(tokens (B, L), images (B, ...)) -> logits``.
        kernel: the product kernel of the smoothed filter (unbound).
        tokens: the clean tokens after the threat (1-D).
        image: the clean image (no batch axis), pixels in [0, 1].
        eligible: the eligible positions (1-D int tensor).
        alphabet: the token ids the attacker may write (1-D int tensor).
        d: substituted tokens, 0 <= d <= len(eligible).
        radius: image L2 radius, >= 0, image units.
        params: the attack's parameters (target, steps, noise_samples, candidates, ...).
        generator: the input's generator (all randomness).
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        ``(tokens', image')`` with at most ``d`` substituted eligible positions (alphabet
        tokens) and ``||image' - image||_2 <= radius`` (checked), image' in [0, 1].
    """
    target = int(params.target)  # type: ignore[arg-type]
    device = image.device
    positions = [int(p) for p in eligible.tolist()]

    def propose(current: torch.Tensor, edited: Sequence[int]) -> list[tuple[int, int]]:
        free = [p for p in positions if p not in edited]
        if not free:
            return []
        k = params.candidates
        if params.candidate_ranking == "gradient":
            return gradient_candidates(
                model,
                kernel.bind(current, image, eligible),
                current,
                free,
                alphabet,
                target=target,
                k=k,
                noise_samples=params.noise_samples,
                generator=generator,
                autocast_dtype=autocast_dtype,
            )
        pos = torch.randint(len(free), (k,), generator=generator, device=device)
        tok = torch.randint(int(alphabet.numel()), (k,), generator=generator, device=device)
        return [(free[int(pos[i])], int(alphabet[int(tok[i])])) for i in range(k)]

    adv_tokens = greedy_edits(
        model,
        lambda toks, img: kernel.bind(toks, img, eligible),
        tokens,
        image,
        d=d,
        propose=propose,
        target=target,
        noise_samples=params.noise_samples,
        generator=generator,
        autocast_dtype=autocast_dtype,
    )
    if radius <= 0:
        return adv_tokens, image
    objective = joint_objective(
        model,
        kernel.bind(adv_tokens, image, eligible),
        image,
        target,
        noise_samples=params.noise_samples,
        generator=generator,
        autocast_dtype=autocast_dtype,
    )
    adv_image = l2_pgd(
        objective,
        image,
        radius=radius,
        steps=params.steps,
        step_size=params.step_length(radius),
        clip=True,
    )
    return adv_tokens, adv_image.to(image.dtype)


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: HybridAttackParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    image_shape: tuple[int, ...] | None = None,
    eligible: Any = None,
    probe: bool = True,
) -> Prepared:
    """Validate everything and plan the hybrid attack at one (tokens, image) pair.

    Args: as :func:`smoothcert.methods.hybrid.prepare`, with
    :class:`~smoothcert.decisions.attack_hybrid.HybridAttackParams`; the image must lie in
    [0, 1] and ``attack_d_max`` at most the input's eligible positions.

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` plan: a selection stage at the
        clean pair, then (``next_stage``) one attack and ``attack`` stage per grid point.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    if not isinstance(params, HybridAttackParams):
        raise InvalidParameterError(
            f"params of type {type(params).__name__} are invalid for method 'attack-hybrid'; "
            "valid: HybridAttackParams"
        )
    tokens, image = inputs
    noise = token_noise(params)
    threat = threat_of(params, eligible)
    tokens = check_tokens(tokens)
    check_image(image, name="image", input_shape=image_shape)
    if not bool(((image >= 0) & (image <= 1)).all()):
        raise InvalidParameterError(
            f"image has values in [{float(image.min()):g}, {float(image.max()):g}]; valid: "
            "pixels in [0, 1] (the attack keeps the pixel box)"
        )
    dev = check_device(device) if device is not None else model_device(model, image.device)
    image = image.to(dev)
    applied = threat.apply(tokens.to(dev))
    if params.attack_d_max > applied.num_eligible:
        raise InvalidParameterError(
            f"attack_d_max = {params.attack_d_max} is invalid for an input with "
            f"{applied.num_eligible} eligible positions; valid range: 0 <= attack_d_max <= "
            f"{applied.num_eligible}"
        )
    kernel = TokenImageNoise(noise, GaussianNoise(params.sigma))
    sampler = Sampler(
        model,
        kernel.bind(applied.tokens, image, applied.eligible),
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=dev,
        autocast_dtype=autocast_dtype,
        probe=probe,
    )
    check_target(params, sampler.num_classes)
    if params.candidate_ranking == "gradient" and not has_embedding_hook(model):
        raise InvalidParameterError(
            f"candidate_ranking = 'gradient' is invalid for a model of type "
            f"{type(model).__name__} without the embedding hook; valid: 'random', or a model "
            "with token_embedding_matrix() and forward_embeddings() "
            "(smoothcert.methods.token_gradient)"
        )
    points = params.points()
    if noise.alphabet is not None:
        alphabet = noise.alphabet.to(dev)
    else:  # a mask kernel without an alphabet: the attacker writes the clean tokens' ids
        alphabet = torch.unique(applied.tokens)
    eligible_positions = applied.eligible.to(dev)

    def attack(i: int, evidence: Evidence) -> Any:
        d, radius = points[i]
        adv_tokens, adv_image = attack_pair(
            model,
            kernel,
            applied.tokens,
            image,
            eligible_positions,
            alphabet,
            d=d,
            radius=radius,
            params=params,
            generator=sampler.generator,
            autocast_dtype=autocast_dtype,
        )
        return kernel.bind(adv_tokens, adv_image, applied.eligible)

    return attack_plan(
        sampler,
        points=len(points),
        n=params.n,
        alpha=params.alpha,
        facts=HybridAttackFacts(num_classes=sampler.num_classes, num_eligible=applied.num_eligible),
        start=start,
        attack=attack,
    )


def attack_hybrid(
    model: Callable[..., torch.Tensor],
    tokens: torch.Tensor,
    image: torch.Tensor,
    *,
    sigma: float,
    beta: float,
    alphabet: Any = None,
    target: int,
    tau: float,
    radii: Sequence[float] = (0.0, 0.25, 0.5),
    attack_d_max: int = 2,
    n: int = 1000,
    alpha: float = 0.001,
    steps: int = 20,
    step_size: float | None = None,
    noise_samples: int = 16,
    candidates: int = 32,
    candidate_ranking: str = "random",
    threat: ThreatModel | None = None,
    kernel: str = "uniform",
    mask_id: int | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> CertifyResult:
    """Attack a smoothed text+image filter at one pair over a (d, r) grid.

    Args:
        model: eval-mode model ``(tokens (B, L), images (B, ...)) -> logits``.
        tokens: one 1-D token sequence.
        image: one image, pixels in [0, 1].
        sigma: image noise of the smoothed filter, > 0, image units.
        beta: token substitution probability, in (0, 1).
        alphabet: the token kernel's alphabet (V or ids).
        target: the flagged class.
        tau: the flagging threshold, in (0, 1).
        radii: image radii of the grid (>= 0, increasing).
        attack_d_max: largest number of substituted tokens attacked.
        n: noisy samples per evaluation.
        alpha: level of each un-flagging test.
        steps: image PGD steps.
        step_size: image PGD step length (default ``2.5 r / steps``).
        noise_samples: joint noise draws per objective evaluation.
        candidates: token substitutions scored per edit.
        candidate_ranking: ``"random"`` or ``"gradient"`` (GCG-style, needs the model's
            embedding hook; :mod:`smoothcert.methods.token_gradient`).
        threat: eligible positions (default every position).
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: the mask id (``"mask"`` only).
        batch_size: samples per forward pass.
        seed: generator seed (recorded).
        device: device to sample on.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"attack-hybrid"``,
        claim ``"empirical"`` and
        :class:`~smoothcert.decisions.attack_hybrid.HybridAttackDetails`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    from smoothcert.methods._tokens_common import check_threat

    noise = kernel_for(
        beta=beta,
        alphabet=alphabet,
        kernel=kernel,
        mask_id=mask_id,
        attacker=None,
        model_vocab_size=None,
    )
    fields = params_from_arguments(
        noise, check_threat(threat), n0=0, n=n, alpha=alpha, tau=tau, target=target
    )
    params = HybridAttackParams(
        sigma=sigma,
        radii=tuple(radii),
        attack_d_max=attack_d_max,
        steps=steps,
        step_size=step_size,
        noise_samples=noise_samples,
        candidates=candidates,
        candidate_ranking=candidate_ranking,
        **fields,
    )
    prepared = prepare(
        model, (tokens, image), params, seed=seed, batch_size=batch_size, device=device
    )
    return decide_attack_hybrid(draw(prepared), params)
