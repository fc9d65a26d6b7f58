"""Dual randomized smoothing (torch half): a sigma chosen per input, soundly, routed to experts.

Sun, Mao & Vechev, "Dual Randomized Smoothing: Beyond Global Noise Variance" (arXiv
2512.01782). A sigma estimator (a model with one output per noise level) smoothed at one
global level ``sigma_estimator`` picks the index ``j``; the classifier (one model at
every level, or the expert trained at ``sigmas[j]``: routing) smoothed at ``sigmas[j]``
certifies the class. :func:`prepare` plans the two stages; the decision, the alpha split
and what is certified are in :mod:`smoothcert.decisions.dual` and
:mod:`smoothcert.certificates.dual`.

How the API keeps the choice sound: the stage-2 sigma is chosen by
:func:`smoothcert.decisions.dual.dual_next_stage` from the stage-1 selection counts
only; no argument names a sigma to certify at, and neither the label nor the classifier's
counts reach the choice. Stage 2 continues stage 1's generator, so its noise is fresh
(independent of stage 1's). Sigmas and radii are in the units of ``x``.

Example:
    >>> import torch
    >>> estimator = torch.nn.Linear(2, 2).eval()   # always picks sigmas[1]
    >>> classifier = torch.nn.Linear(2, 2).eval()  # class 0 iff x[0] > 0
    >>> with torch.no_grad():
    ...     _ = estimator.weight.zero_(); _ = estimator.bias.copy_(torch.tensor([0.0, 1.0]))
    ...     _ = classifier.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    ...     _ = classifier.bias.zero_()
    >>> res = certify(estimator, [classifier], torch.tensor([1.0, 0.0]), sigmas=(0.25, 0.5),
    ...               sigma_estimator=0.5, n0=100, n=10_000, alpha=0.002, seed=0)
    >>> res.prediction, res.details.sigma, res.details.limited_by, 0.8 < res.radius < 1.0
    (0, 0.5, 'classifier', True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from smoothcert.decisions.dual import (
    DualFacts,
    DualParams,
    DualPredictParams,
    decide_dual,
    decide_dual_predict,
    dual_next_stage,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import check_image, model_device
from smoothcert.methods.sampler import PlannedStage, Prepared, Sampler, draw
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.records import CertifyResult, Evidence
from smoothcert.sampling.device import check_device


class DualSmoothingModel(torch.nn.Module):
    """A sigma estimator and the classifier(s) it routes to, as one model for a dataset run.

    Args:
        estimator: maps a batch ``(B, *x.shape)`` to ``(B, len(sigmas))`` scores; output
            ``j`` means ``sigmas[j]``.
        classifiers: one model used at every sigma, or one expert per sigma (in the
            order of ``sigmas``), each mapping ``(B, *x.shape)`` to ``(B, num_classes)``.
        sigmas: the noise levels the experts were trained at (checked against the
            method's parameters), or None if not known.

    Raises:
        InvalidParameterError: if ``classifiers`` is empty or its length is neither 1
            nor ``len(sigmas)``.

    Example:
        >>> net = DualSmoothingModel(torch.nn.Linear(3, 2), [torch.nn.Linear(3, 4)])
        >>> net.classifier_for(1) is net.classifiers[0]
        True
    """

    def __init__(
        self,
        estimator: Callable[..., torch.Tensor],
        classifiers: Sequence[Callable[..., torch.Tensor]],
        *,
        sigmas: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        classifiers = (
            list(classifiers)
            if isinstance(classifiers, Sequence) and not isinstance(classifiers, torch.nn.Module)
            else []
        )
        if not classifiers:
            raise InvalidParameterError(
                "classifiers = [] is invalid; valid: one model used at every sigma, or one "
                "expert per sigma"
            )
        if sigmas is not None and len(classifiers) not in (1, len(sigmas)):
            raise InvalidParameterError(
                f"{len(classifiers)} classifiers is invalid for {len(sigmas)} sigmas; valid: "
                f"1 (one model at every sigma) or {len(sigmas)} (one expert per sigma)"
            )
        self.estimator = estimator
        # a ModuleList when every classifier is a module (moved, fingerprinted and
        # checked for eval mode with the bundle); plain callables are kept as given
        self.classifiers: Any = (
            torch.nn.ModuleList(classifiers)  # type: ignore[arg-type]
            if all(isinstance(c, torch.nn.Module) for c in classifiers)
            else tuple(classifiers)
        )
        self.sigmas = None if sigmas is None else tuple(float(s) for s in sigmas)

    def classifier_for(self, index: int) -> Callable[..., torch.Tensor]:
        """The model smoothed at ``sigmas[index]`` (the shared one, or expert ``index``)."""
        if len(self.classifiers) == 1:
            return self.classifiers[0]  # type: ignore[no-any-return]
        return self.classifiers[index]  # type: ignore[no-any-return]

    def map_parts(self, fn: Callable[[Any], Any]) -> DualSmoothingModel:
        """A bundle with ``fn`` applied to the estimator and to each classifier.

        Used by :func:`smoothcert.sampling.fast_path.prepare_model`, so that compile and
        channels-last apply to the models that run, not to this container.
        """
        return DualSmoothingModel(
            fn(self.estimator), [fn(c) for c in self.classifiers], sigmas=self.sigmas
        ).train(self.training)

    def forward(self, *inputs: Any) -> torch.Tensor:
        """Not a classifier on its own: certify it with the ``dual`` method.

        Raises:
            InvalidParameterError: always.
        """
        raise InvalidParameterError(
            "a DualSmoothingModel is certified by method 'dual' (its estimator picks the "
            "classifier); valid: smoothcert.methods.dual.certify or --method dual"
        )


def _check_bundle(model: Any, params: DualParams) -> DualSmoothingModel:
    if not isinstance(model, DualSmoothingModel):
        raise InvalidParameterError(
            f"model of type {type(model).__name__} is invalid for method 'dual'; valid: a "
            "DualSmoothingModel(estimator, classifiers) (smoothcert.methods.dual.certify "
            "builds one)"
        )
    if len(model.classifiers) not in (1, len(params.sigmas)):
        raise InvalidParameterError(
            f"{len(model.classifiers)} classifiers is invalid for sigmas = {params.sigmas!r}; "
            f"valid: 1 (one model at every sigma) or {len(params.sigmas)} (one expert per sigma)"
        )
    for owner, known in (
        ("the classifiers", model.sigmas),
        ("the estimator", getattr(model.estimator, "dual_sigmas", None)),
    ):
        if known is not None and tuple(known) != params.sigmas:
            raise InvalidParameterError(
                f"sigmas = {params.sigmas!r} is invalid: {owner} were trained for sigmas = "
                f"{tuple(known)!r}; valid: the same sigmas"
            )
    return model


def prepare(
    model: Any,
    inputs: tuple[Any, ...],
    params: DualParams | DualPredictParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    input_shape: tuple[int, ...] | None = None,
    probe: bool = True,
) -> Prepared:
    """Validate everything and plan the two stages of dual smoothing at one input.

    Stage 1 (planned): ``sigma_selection`` (``n0``) and ``sigma_estimation`` (``n``)
    samples of the estimator at ``sigma_estimator``. Stage 2 (asked for by
    :func:`~smoothcert.decisions.dual.dual_next_stage` after stage 1, unless the
    estimator's certificate abstains): ``selection`` (``n0``) and ``estimation`` (``n``)
    samples of the classifier for the chosen ``j`` at ``sigmas[j]``, continuing the same
    generator. With :class:`~smoothcert.decisions.dual.DualPredictParams`: one
    ``sigma_estimation`` stage, then one ``prediction`` stage, of ``n`` samples each.

    Args:
        model: a :class:`DualSmoothingModel` (every part in eval mode).
        inputs: ``(x,)``: one input, no batch axis, finite floating-point tensor.
        params: the :class:`~smoothcert.decisions.dual.DualParams` (or
            :class:`~smoothcert.decisions.dual.DualPredictParams`).
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        batch_size: samples per forward pass, >= 1.
        num_classes: expected classifier outputs; inferred if None.
        device: device to sample on; default the estimator's (else ``x``'s) device.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.
        input_shape: if given, ``x.shape`` must equal it.
        probe: run the estimator and each classifier once on the clean input to check
            their outputs (``len(sigmas)`` and ``num_classes`` columns).

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` plan (sources ``1 + j``: the
        classifier at ``sigmas[j]``).

    Raises:
        InvalidParameterError: on any bad argument, before sampling: not a dual model,
            a classifier count that is neither 1 nor ``len(sigmas)``, an estimator whose
            output width is not ``len(sigmas)``, a bad input.
    """
    start = time.perf_counter()
    if not isinstance(params, (DualParams, DualPredictParams)):
        raise InvalidParameterError(
            f"params of type {type(params).__name__} are invalid for method 'dual'; valid: "
            "DualParams or DualPredictParams"
        )
    bundle = _check_bundle(model, params)
    (x,) = inputs
    check_image(x, input_shape=input_shape)
    dev = check_device(device) if device is not None else model_device(bundle.estimator, x.device)
    x = x.to(dev)
    m = len(params.sigmas)
    options: dict[str, Any] = {
        "seed": seed,
        "batch_size": batch_size,
        "device": dev,
        "autocast_dtype": autocast_dtype,
        "probe": probe,
    }
    try:
        estimator = Sampler(
            bundle.estimator,
            GaussianNoise(params.sigma_estimator).bind(x),
            num_classes=m,
            **options,
        )
    except InvalidParameterError as err:
        raise InvalidParameterError(
            f"the sigma estimator must have one output per sigma (len(sigmas) = {m}): {err}"
        ) from err
    probed: dict[int, int] = {}
    sources = []
    for j, sigma in enumerate(params.sigmas):
        classifier = bundle.classifier_for(j)
        sampler = Sampler(
            classifier,
            GaussianNoise(sigma).bind(x),
            num_classes=probed.get(id(classifier), num_classes),
            generator=estimator.generator,
            **dict(options, probe=probe and id(classifier) not in probed),
        )
        probed[id(classifier)] = sampler.num_classes
        sources.append(sampler)
    classes = {s.num_classes for s in sources}
    if len(classes) != 1:
        raise InvalidParameterError(
            f"the classifiers have {sorted(classes)} outputs; valid: the same number of classes"
        )

    def next_stage(evidence: Evidence) -> PlannedStage | None:
        step = dual_next_stage(evidence, params)
        if step is None:
            return None
        role, n, j = step
        return PlannedStage(role, n, 0.0, source=j + 1)

    if isinstance(params, DualParams):
        plan = (
            PlannedStage("sigma_selection", params.n0, 0.0),
            PlannedStage("sigma_estimation", params.n, params.alpha_sigma),
        )
    else:
        plan = (PlannedStage("sigma_estimation", params.n, params.alpha_sigma),)
    return Prepared(
        estimator,
        plan,
        DualFacts(num_classes=classes.pop(), num_sigmas=m),
        start,
        next_stage=next_stage,
        sources=tuple(sources),
    )


def certify(
    estimator: Callable[..., torch.Tensor],
    classifiers: Sequence[Callable[..., torch.Tensor]],
    x: torch.Tensor,
    *,
    sigmas: Sequence[float],
    sigma_estimator: float,
    n0: int,
    n: int,
    alpha: float,
    alpha_split: float = 0.5,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify ``x`` with dual randomized smoothing (an L2 radius; a sigma chosen per input).

    Draws the evidence (:func:`prepare`, then :func:`~smoothcert.methods.sampler.draw`)
    and decides with :func:`~smoothcert.decisions.dual.decide_dual`, where the
    certificate and its guarantee are stated.

    Args:
        estimator: model mapping ``(B, *x.shape)`` to ``(B, len(sigmas))`` scores, in eval
            mode; smoothed at ``sigma_estimator``.
        classifiers: one model used at every sigma, or one expert per sigma (routing),
            each mapping ``(B, *x.shape)`` to ``(B, num_classes)``, in eval mode.
        x: one input, no batch axis, finite floating-point tensor.
        sigmas: the noise levels, >= 2, strictly increasing, > 0, in units of ``x``.
        sigma_estimator: the estimator's noise level, ``>= max(sigmas)``.
        n0: selection samples of each stage, >= 1.
        n: estimation samples of each stage, >= 1.
        alpha: failure probability of the whole certificate, in (0, 1).
        alpha_split: share of alpha for the estimator's certificate, in (0, 1).
        batch_size: samples per forward pass, >= 1.
        seed: generator seed (recorded).
        num_classes: expected classifier outputs; inferred if None.
        device: device to sample on; default the estimator's (else ``x``'s) device.
        input_shape: if given, ``x.shape`` must equal it.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"dual"``, the
        evidence of both stages and :class:`~smoothcert.decisions.dual.DualDetails`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling (see
            :func:`prepare` and :class:`~smoothcert.decisions.dual.DualParams`).
    """
    options = {
        "batch_size": batch_size,
        "seed": seed,
        "num_classes": num_classes,
        "device": device,
        "input_shape": input_shape,
        "autocast_dtype": autocast_dtype,
    }
    params = DualParams(
        sigmas=sigmas,  # type: ignore[arg-type]  # checked and made a tuple by DualParams
        sigma_estimator=sigma_estimator,
        n0=n0,
        n=n,
        alpha=alpha,
        alpha_split=alpha_split,
    )
    evidence = _draw(estimator, classifiers, x, params, options)
    return decide_dual(evidence, params)


def predict(
    estimator: Callable[..., torch.Tensor],
    classifiers: Sequence[Callable[..., torch.Tensor]],
    x: torch.Tensor,
    *,
    sigmas: Sequence[float],
    sigma_estimator: float,
    n: int,
    alpha: float,
    alpha_split: float = 0.5,
    **options: Any,
) -> CertifyResult:
    """The dual classifier's abstaining prediction at ``x`` (no radius).

    Cohen et al.'s PREDICT on the estimator, then on the classifier at the chosen
    sigma (:class:`~smoothcert.decisions.dual.DualPredictParams` states the guarantee;
    decided by :func:`~smoothcert.decisions.dual.decide_dual_predict`).

    Args:
        estimator: as in :func:`certify`.
        classifiers: as in :func:`certify`.
        x: as in :func:`certify`.
        sigmas: as in :func:`certify`.
        sigma_estimator: as in :func:`certify`.
        n: samples of each stage, >= 1.
        alpha: probability of returning a class other than the dual classifier's.
        alpha_split: share of alpha for the estimator's test, in (0, 1).
        **options: ``batch_size``, ``seed``, ``num_classes``, ``device``,
            ``input_shape``, ``autocast_dtype`` as in :func:`certify`.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"dual-predict"``.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    params = DualPredictParams(
        sigmas=sigmas,  # type: ignore[arg-type]  # checked and made a tuple by the class
        sigma_estimator=sigma_estimator,
        n=n,
        alpha=alpha,
        alpha_split=alpha_split,
    )
    evidence = _draw(estimator, classifiers, x, params, options)
    return decide_dual_predict(evidence, params)


def _draw(
    estimator: Callable[..., torch.Tensor],
    classifiers: Sequence[Callable[..., torch.Tensor]],
    x: torch.Tensor,
    params: DualParams | DualPredictParams,
    options: dict[str, Any],
) -> Evidence:
    if isinstance(classifiers, torch.nn.Module) or not isinstance(classifiers, Sequence):
        raise InvalidParameterError(
            f"classifiers of type {type(classifiers).__name__} is invalid; valid: a list of "
            "one model (used at every sigma) or of one expert per sigma"
        )
    bundle = DualSmoothingModel(estimator, classifiers)
    options.setdefault("seed", 0)
    return draw(prepare(bundle, (x,), params, **options))


def load_bundled(
    name: str, params: DualParams, *, device: str | torch.device
) -> DualSmoothingModel:
    """The bundled experts ``name`` at ``params.sigmas`` and their sigma estimator, in eval mode.

    The estimator is the model the expert family names
    (:attr:`smoothcert.models.architectures.ModelSpec.sigma_estimator`), loaded with the
    weights trained at ``params.sigma_estimator``.

    Raises:
        InvalidParameterError: if the family has no estimator, or no weights at one of
            the sigmas (naming the available ones).
        AssetError: on missing or altered weights.
    """
    from smoothcert.models import get_model_spec, load_model

    estimator_name = get_model_spec(name).sigma_estimator
    if estimator_name is None:
        raise InvalidParameterError(
            f"model = {name!r} has no sigma estimator for method 'dual'; valid: a bundled "
            "expert family with one (e.g. fmnist_cnn)"
        )
    experts = [load_model(name, sigma=s, device=device) for s in params.sigmas]
    estimator = load_model(estimator_name, sigma=params.sigma_estimator, device=device)
    return DualSmoothingModel(estimator, experts, sigmas=params.sigmas).eval()
