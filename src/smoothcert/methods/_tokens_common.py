"""Pieces shared by the torch halves of the token and hybrid methods.

They turn the pure :class:`~smoothcert.decisions.tokens.TokenParams` into the torch
kernel and threat that are sampled, so the kernel sampled is by construction the
kernel the decision certifies (soundness rule 2), and draw the stages.
"""

from __future__ import annotations

from typing import Any

from smoothcert.decisions.tokens import TokenFacts, TokenParams, beta_limit_exceeded
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.sampler import PlannedStage, Sampler
from smoothcert.methods.threats import AppliedThreat, ThreatModel, anywhere, positions
from smoothcert.noise.tokens import BoundTokenNoise, TokenSubstitutionNoise


def check_threat(threat: Any) -> ThreatModel:
    """Return ``threat`` (default :func:`~smoothcert.methods.threats.anywhere`), or raise."""
    if threat is None:
        return anywhere()
    # Duck-typed (not isinstance): doctest collection may import this package twice.
    if not (callable(getattr(threat, "apply", None)) and callable(getattr(threat, "params", None))):
        raise InvalidParameterError(
            f"threat of type {type(threat).__name__} is invalid; valid: a ThreatModel from "
            "smoothcert.methods.threats (append_suffix, last_d, anywhere, positions)"
        )
    return threat


def threat_fields(threat: ThreatModel) -> dict[str, Any]:
    """The :class:`TokenParams` fields that describe ``threat``."""
    return {
        "threat": threat.kind,
        "num_positions": threat.num_positions,
        "placeholder_id": threat.placeholder_id,
        "eligible_positions": threat.eligible,
        "mask_length": threat.mask_length,
        "threat_d_max": threat.d_max,
    }


def threat_of(params: TokenParams, eligible: Any = None) -> ThreatModel:
    """The :class:`ThreatModel` the parameters describe (fully validated).

    For ``threat = "given"``, ``eligible`` (this input's positions: a boolean mask or a
    list) becomes a :func:`~smoothcert.methods.threats.positions` threat, with
    ``d_max = min(threat_d_max, D)``.

    Raises:
        InvalidParameterError: on ``"given"`` without positions, or positions with
            another threat.
    """
    if params.threat == "given":
        if eligible is None:
            raise InvalidParameterError(
                "threat = 'given' needs the eligible positions of each input; valid: a "
                "dataset with per-example eligible masks (e.g. listings), or another threat"
            )
        threat = positions(eligible)
        count = len(threat.eligible or ())
        d_max = None if params.threat_d_max is None else min(params.threat_d_max, count)
        return positions(eligible, d_max=d_max)
    if eligible is not None:
        raise InvalidParameterError(
            f"eligible positions were given with threat = {params.threat!r}; valid: "
            "threat = 'given' (or omit them)"
        )
    return ThreatModel(
        params.threat,
        num_positions=params.num_positions,
        placeholder_id=params.placeholder_id,
        eligible=params.eligible_positions,
        mask_length=params.mask_length,
        d_max=params.threat_d_max,
    )


def alphabet_field(noise: TokenSubstitutionNoise) -> int | tuple[int, ...] | None:
    """The kernel's alphabet as a parameter: ``V`` when it is ``0..V-1``, else its ids."""
    if noise.alphabet is None:
        return None
    ids = noise.alphabet.tolist()
    return len(ids) if ids == list(range(len(ids))) else tuple(ids)


def token_noise(params: TokenParams) -> TokenSubstitutionNoise:
    """The token kernel the parameters describe."""
    alphabet = list(params.alphabet) if isinstance(params.alphabet, tuple) else params.alphabet
    return TokenSubstitutionNoise(
        beta=params.beta,
        alphabet=alphabet,
        kernel=params.kernel,
        mask_id=params.mask_id,
        attacker=params.attacker,
    )


def check_outside(params: TokenParams, bound: BoundTokenNoise) -> int:
    """Number of clean eligible tokens outside the alphabet, checked before sampling.

    Returns:
        ``bound.num_outside`` (non-zero only for the uniform kernel with
        ``attacker="any"``, where the kernel samples them as the certificate assumes).

    Raises:
        InvalidParameterError: if there are such tokens and ``beta > V / (V + 1)`` (the
            any-token certificate covers them only up to that ``beta``).
    """
    count = int(bound.num_outside)
    vocab = params.vocab_size
    if count and vocab is not None and beta_limit_exceeded(params.beta, vocab):
        raise InvalidParameterError(
            f"beta = {params.beta!r} is invalid with {count} clean eligible token(s) outside "
            f"the alphabet of V = {vocab}; valid range: beta <= V / (V + 1) = "
            f"{vocab / (vocab + 1):.6g} (or keep every clean eligible token in the alphabet)"
        )
    return count


def default_attacker(
    attacker: str | None, alphabet_size: int | None, vocab_size: int | None
) -> str:
    """The threat certified when the user did not choose one.

    ``"any"`` where the kernel's alphabet is smaller than the model's vocabulary (an
    attacker could write a token the kernel never draws), ``"alphabet"`` where it is the
    whole vocabulary or the vocabulary is not known (``vocab_size`` None), or for a
    kernel without an alphabet. An explicit ``attacker`` is returned unchanged.

    Example:
        >>> default_attacker(None, 5000, 30522), default_attacker(None, 30522, 30522)
        ('any', 'alphabet')
    """
    if attacker is not None:
        return attacker
    if alphabet_size is None or vocab_size is None:
        return "alphabet"
    return "any" if alphabet_size < int(vocab_size) else "alphabet"


def kernel_for(
    *,
    beta: float,
    alphabet: Any,
    kernel: str,
    mask_id: int | None,
    attacker: str | None,
    model_vocab_size: int | None,
) -> TokenSubstitutionNoise:
    """The token kernel of a ``certify`` call, with the default threat resolved."""
    noise = TokenSubstitutionNoise(beta=beta, alphabet=alphabet, kernel=kernel, mask_id=mask_id)
    chosen = default_attacker(attacker, noise.vocab_size, model_vocab_size)
    if chosen == "alphabet" and attacker is None:
        return noise
    return TokenSubstitutionNoise(
        beta=beta, alphabet=alphabet, kernel=kernel, mask_id=mask_id, attacker=chosen
    )


def check_placeholder(applied: AppliedThreat, noise: TokenSubstitutionNoise) -> None:
    """Reject an ``append_suffix`` placeholder the kernel's certificate cannot cover."""
    placeholder = applied.threat.placeholder_id
    if placeholder is None:
        return
    if noise.mask_id is not None and placeholder == noise.mask_id:
        raise InvalidParameterError(
            f"placeholder_id = {placeholder} equals mask_id; valid: a placeholder that differs "
            "from the mask id"
        )
    alphabet = noise.alphabet
    if noise.kernel == "uniform" and noise.attacker == "any":
        return  # an out-of-alphabet placeholder is a clean out-of-alphabet token
    if alphabet is not None and not bool((alphabet == placeholder).any()):
        raise InvalidParameterError(
            f"placeholder_id = {placeholder} is not in the kernel's alphabet; valid: "
            f"{noise.valid_range()} (the certificate assumes the clean token at every "
            "eligible position lies in the alphabet)"
        )


def check_target(params: TokenParams, classes: int) -> None:
    """Check ``target < num_classes`` once the number of classes is known."""
    if params.target is not None and params.target >= classes:
        raise InvalidParameterError(
            f"target = {params.target} is invalid; valid range: 0 <= target <= {classes - 1}"
        )


def plan_stages(
    sampler: Sampler, params: TokenParams, applied: AppliedThreat, *, clean_outside: int = 0
) -> tuple[tuple[PlannedStage, ...], TokenFacts]:
    """The stages of a token or hybrid run and the facts about the input.

    Majority mode draws ``n0`` selection samples, then ``n`` fresh estimation samples;
    the safety filter (fixed target) draws only the estimation samples.

    Raises:
        InvalidParameterError: if the target is not one of the model's classes.
    """
    check_target(params, sampler.num_classes)
    plan = (PlannedStage("estimation", params.n, params.alpha),)
    if params.majority:
        plan = (PlannedStage("selection", params.n0, 0.0), *plan)
    facts = TokenFacts(
        num_classes=sampler.num_classes,
        length=int(applied.tokens.numel()),
        num_eligible=applied.num_eligible,
        d_max=applied.d_max,
        sampling_tv_bound=float(sampler.noise.tv_bound()),
        eligible_positions=tuple(int(p) for p in applied.eligible.tolist()),
        clean_outside=clean_outside,
    )
    return plan, facts


def params_from_arguments(
    noise: TokenSubstitutionNoise,
    threat: ThreatModel,
    **mode: Any,
) -> dict[str, Any]:
    """The :class:`TokenParams` fields of a kernel, a threat and the mode arguments."""
    return {
        "beta": noise.beta,
        "alphabet": alphabet_field(noise),
        "kernel": noise.kernel,
        "mask_id": noise.mask_id,
        "attacker": noise.attacker,
        **threat_fields(threat),
        **mode,
    }
