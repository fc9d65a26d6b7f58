"""The method registry: the one place a certification method is added.

Every method is two halves (DESIGN.md, "Architecture"): a torch half
``prepare(model, inputs, params, *, seed, batch_size, num_classes, device,
autocast_dtype) -> Prepared`` (validates everything and plans the sampling stages;
:func:`smoothcert.methods.sampler.draw` or ``draw_many`` then draws them into
:class:`~smoothcert.records.Evidence`) and a pure half ``decide(evidence, params) ->
CertifyResult``. A :class:`MethodSpec` names both, the typed parameter class and the
inputs the method needs. The runner, the config hash, the CLI (``certify --method``,
``recertify``) and the reports look methods up here and nowhere else.

This module is pure (no torch): the torch half is named by its import path and
imported on first use, so offline re-certification and report reading never load torch.

Adding a method:

1. a parameter dataclass (a registered :class:`~smoothcert.records.Payload`) and a pure
   ``decide`` in ``smoothcert/decisions/<name>.py``, with its :class:`~smoothcert.records.Facts`
   and :class:`~smoothcert.records.Details` if it needs them;
2. a torch ``prepare`` in ``smoothcert/methods/<name>.py`` that builds a
   :class:`smoothcert.methods.sampler.Sampler` for the input and plans its stages;
3. one :func:`register_method` call below.

Example:
    >>> spec = get_method("cohen")
    >>> spec.params_type.__name__, spec.input_kind, spec.radius_unit
    ('GaussianParams', 'image', 'l2')
    >>> get_method("gauss")
    Traceback (most recent call last):
    ...
    smoothcert.errors.InvalidParameterError: method = 'gauss' is invalid; valid values: ...
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from smoothcert.decisions.attack import AttackParams, decide_attack
from smoothcert.decisions.attack_fields import FieldsAttackParams, decide_attack_fields
from smoothcert.decisions.attack_hybrid import HybridAttackParams, decide_attack_hybrid
from smoothcert.decisions.cohen import (
    GaussianParams,
    GaussianPredictParams,
    decide_cohen,
    decide_cohen_top2,
    decide_predict,
)
from smoothcert.decisions.combined import (
    CombinedParams,
    SoftCombinedParams,
    decide_cohen_combined,
    decide_soft_combined,
)
from smoothcert.decisions.dual import (
    DualParams,
    DualPredictParams,
    decide_dual,
    decide_dual_predict,
)
from smoothcert.decisions.fields import FieldsParams, decide_fields
from smoothcert.decisions.hybrid import HybridParams, decide_hybrid
from smoothcert.decisions.hybrid_sequential import HybridSequentialParams, decide_hybrid_sequential
from smoothcert.decisions.lipschitz import LipschitzParams, decide_lipschitz
from smoothcert.decisions.sequential import SequentialParams, decide_sequential
from smoothcert.decisions.soft import SoftParams, decide_soft, decide_soft_top2
from smoothcert.decisions.tokens import TokenParams, decide_tokens
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Evidence, Payload

INPUT_KINDS = ("image", "tokens", "tokens+image", "fields")
"""What a method feeds the model: an image; token ids (plus, for a (tokens, image)
model, the image unchanged); a (tokens, image) pair, both noised; a tabular row
(categorical fields, each with its own alphabet, and a continuous vector, both noised)."""

DATASET_KINDS: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "tokens": ("text", "text_image"),
    "tokens+image": ("text_image",),
    "fields": ("tabular",),
}
"""The dataset kinds (``smoothcert.data.dataset_kind``) that fit each input kind."""


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: the method's name (CLI ``--method`` and the records' ``method``).
        summary: one line for ``--help``.
        params_type: its typed parameter class (a registered Payload dataclass).
        decide: the pure decision ``decide(evidence, params) -> CertifyResult``.
        preparer: import path ``"module:function"`` of the torch ``prepare``.
        input_kind: one of :data:`INPUT_KINDS`.
        radius_unit: ``"l2"`` or ``"tokens"``.
        model_loader: import path ``"module:function"`` of a loader
            ``load(name, params, *, device) -> model`` for a method whose bundled model
            is several models (dual smoothing: experts and their sigma estimator); None:
            ``smoothcert.models.load_model(name, sigma=...)``.
    """

    name: str
    summary: str
    params_type: type[Payload]
    decide: Callable[[Evidence, Any], CertifyResult]
    preparer: str
    input_kind: str
    radius_unit: str
    model_loader: str | None = None

    def params(self, values: Mapping[str, Any]) -> Payload:
        """Build and validate the method's parameters from a mapping of field values.

        Raises:
            InvalidParameterError: naming a key that is not a parameter of this method
                (with the valid ones), or a value out of range.
        """
        names = [f.name for f in dataclasses.fields(self.params_type)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            verb = "is not a parameter" if len(unknown) == 1 else "are not parameters"
            raise InvalidParameterError(
                f"{', '.join(unknown)} {verb} of method {self.name!r}; valid parameters: "
                f"{', '.join(names)}"
            )
        required = [
            f.name
            for f in dataclasses.fields(self.params_type)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in values]
        if missing:
            raise InvalidParameterError(
                f"method {self.name!r} needs {', '.join(missing)}; valid parameters: "
                f"{', '.join(names)} (required: {', '.join(required)})"
            )
        return self.params_type(**values)

    def load_preparer(self) -> Callable[..., Any]:
        """Import and return the torch ``prepare`` function (imports torch)."""
        return _import(self.preparer)

    def load_model_loader(self) -> Callable[..., Any] | None:
        """Import and return the bundled-model loader, or None (see :attr:`model_loader`)."""
        return None if self.model_loader is None else _import(self.model_loader)

    def check_dataset_kind(self, kind: str, *, dataset: str) -> None:
        """Raise unless a dataset of ``kind`` examples fits this method's inputs.

        Raises:
            InvalidParameterError: naming the dataset, its kind and the kinds that fit.
        """
        valid = DATASET_KINDS[self.input_kind]
        if kind not in valid:
            article = "an" if valid[0][0] in "aeiou" else "a"
            raise InvalidParameterError(
                f"dataset = {dataset!r} ({kind} examples) does not fit method {self.name!r}, "
                f"which needs {' or '.join(valid)} examples; valid: {article} "
                f"{' or '.join(valid)} dataset"
            )

    def check_params(self, params: Payload) -> None:
        """Raise unless ``params`` is an instance of this method's parameter class."""
        if type(params) is not self.params_type:
            raise InvalidParameterError(
                f"parameters of kind {params.kind!r} are invalid for method {self.name!r}; "
                f"valid: {self.params_type.__name__}"
            )


def _import(path: str) -> Callable[..., Any]:
    module, _, func = path.partition(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method (the one plug-in point; see the module docstring).

    Raises:
        InvalidParameterError: on a name already registered or a bad input kind.
    """
    if spec.name in _METHODS:
        raise InvalidParameterError(f"method {spec.name!r} is already registered")
    if spec.input_kind not in INPUT_KINDS:
        raise InvalidParameterError(
            f"input_kind = {spec.input_kind!r} is invalid; valid values: {INPUT_KINDS}"
        )
    _METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """Return the registered method ``name``.

    Raises:
        InvalidParameterError: on an unknown name, listing the valid ones.
    """
    spec = _METHODS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InvalidParameterError(
            f"method = {name!r} is invalid; valid values: {', '.join(method_names())}"
        )
    return spec


def method_names() -> tuple[str, ...]:
    """The registered method names, sorted."""
    return tuple(sorted(_METHODS))


register_method(
    MethodSpec(
        name="cohen",
        summary="Gaussian CERTIFY (Cohen et al. 2019): L2 radius sigma Phi^-1(p_lower)",
        params_type=GaussianParams,
        decide=decide_cohen,
        preparer="smoothcert.methods.cohen:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="cohen-top2",
        summary="Gaussian top-two certificate: runner-up bounded too (alpha split in two)",
        params_type=GaussianParams,
        decide=decide_cohen_top2,
        preparer="smoothcert.methods.cohen:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="cohen-predict",
        summary="Gaussian PREDICT (Cohen et al. 2019): abstaining prediction, no radius",
        params_type=GaussianPredictParams,
        decide=decide_predict,
        preparer="smoothcert.methods.cohen:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="cohen-sequential",
        summary="Gaussian, sequential: rounds until the answer is known (anytime-valid)",
        params_type=SequentialParams,
        decide=decide_sequential,
        preparer="smoothcert.methods.cohen:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="tokens",
        summary="token substitution smoothing: number of edited tokens d",
        params_type=TokenParams,
        decide=decide_tokens,
        preparer="smoothcert.methods.tokens:prepare",
        input_kind="tokens",
        radius_unit="tokens",
    )
)
register_method(
    MethodSpec(
        name="hybrid",
        summary="hybrid text+image smoothing (arXiv 2605.12876): curve r(d)",
        params_type=HybridParams,
        decide=decide_hybrid,
        preparer="smoothcert.methods.hybrid:prepare",
        input_kind="tokens+image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="hybrid-fields",
        summary="hybrid smoothing of tabular rows: d changed categorical fields + L2 on the rest",
        params_type=FieldsParams,
        decide=decide_fields,
        preparer="smoothcert.methods.fields:prepare",
        input_kind="fields",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="hybrid-sequential",
        summary="hybrid, sequential: decide target points (d, r) with as few samples as needed",
        params_type=HybridSequentialParams,
        decide=decide_hybrid_sequential,
        preparer="smoothcert.methods.hybrid:prepare",
        input_kind="tokens+image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="dual",
        summary="dual smoothing (arXiv 2512.01782): a certified sigma per input, routed to experts",
        params_type=DualParams,
        decide=decide_dual,
        preparer="smoothcert.methods.dual:prepare",
        input_kind="image",
        radius_unit="l2",
        model_loader="smoothcert.methods.dual:load_bundled",
    )
)
register_method(
    MethodSpec(
        name="dual-predict",
        summary="dual smoothing's abstaining prediction (PREDICT at the estimator's sigma)",
        params_type=DualPredictParams,
        decide=decide_dual_predict,
        preparer="smoothcert.methods.dual:prepare",
        input_kind="image",
        radius_unit="l2",
        model_loader="smoothcert.methods.dual:load_bundled",
    )
)
register_method(
    MethodSpec(
        name="soft",
        summary="soft-score Gaussian smoothing: bound the mean softmax/sparsemax/vote score",
        params_type=SoftParams,
        decide=decide_soft,
        preparer="smoothcert.methods.soft:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="soft-top2",
        summary="soft-score top-two certificate: runner-up's mean score bounded (alpha split)",
        params_type=SoftParams,
        decide=decide_soft_top2,
        preparer="smoothcert.methods.soft:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="cohen-combined",
        summary="Gaussian votes with a chosen bound (cp/hoeffding/bernstein) and combiner",
        params_type=CombinedParams,
        decide=decide_cohen_combined,
        preparer="smoothcert.methods.cohen:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="soft-combined",
        summary="soft scores with a chosen bound (hoeffding/bernstein) and combiner",
        params_type=SoftCombinedParams,
        decide=decide_soft_combined,
        preparer="smoothcert.methods.soft:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="lipschitz",
        summary="soft softmax smoothing of a certified-Lipschitz model: Lipschitz-aware radius",
        params_type=LipschitzParams,
        decide=decide_lipschitz,
        preparer="smoothcert.methods.lipschitz:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="attack-l2",
        summary="empirical: L2 PGD on the smoothed classifier (SmoothAdv) at a radius grid",
        params_type=AttackParams,
        decide=decide_attack,
        preparer="smoothcert.methods.attack:prepare",
        input_kind="image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="attack-hybrid",
        summary="empirical: token edits + image PGD against a smoothed text+image filter",
        params_type=HybridAttackParams,
        decide=decide_attack_hybrid,
        preparer="smoothcert.methods.attack_hybrid:prepare",
        input_kind="tokens+image",
        radius_unit="l2",
    )
)
register_method(
    MethodSpec(
        name="attack-fields",
        summary="empirical: field changes + continuous PGD against a smoothed tabular classifier",
        params_type=FieldsAttackParams,
        decide=decide_attack_fields,
        preparer="smoothcert.methods.attack_fields:prepare",
        input_kind="fields",
        radius_unit="l2",
    )
)
