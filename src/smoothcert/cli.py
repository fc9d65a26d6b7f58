"""The ``smoothcert`` command line (typer + rich).

Commands:

* ``smoothcert certify``: certify a dataset split with any registered method
  (``--method``; default: Cohen's CERTIFY with the ``digits_cnn`` model at sigma 0.25
  on the digits test split), locally or on Ray, with a progress bar, resuming an
  interrupted run; prints the certified-accuracy table and writes a PNG.
* ``smoothcert recertify RESULTS --output OUT``: recompute the certificates of a result
  file from its saved evidence (another alpha, the top-two certificate), no model.
* ``smoothcert report RESULTS...``: certified accuracy per radius, ACR and abstention
  rate, one column per file (Markdown, or LaTeX with ``--latex``), optional plot.
* ``smoothcert export RESULTS --format tsv``: the classic ``idx label predict radius
  correct time`` columns.
* ``smoothcert attack``: L2 PGD on the smoothed classifier at a radius grid (empirical
  robustness, method ``attack-l2``); ``report`` compares it with certified curves.
* ``smoothcert radius``: Clopper-Pearson bound and certified radius for given counts,
  and the largest radius n samples can certify.
* ``smoothcert train``: train the bundled models' weights.

Errors in the input print one line ``error: ...`` on stderr, without a traceback,
and exit with status 2 (invalid parameters, usage errors) or 1 (unusable result
files, missing assets, I/O errors).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import TyperException

from smoothcert import __version__
from smoothcert.errors import InvalidParameterError, SmoothCertError

EXIT_INVALID = 2
"""Exit status for invalid parameters and usage errors."""

EXIT_FAILURE = 1
"""Exit status for other errors (result files, assets, I/O)."""

_DEFAULT_RESULTS_DIR = Path("results")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _raw_option_value(args: Sequence[str] | None, param: Any) -> str | None:
    """The text the user gave for an option that failed to parse (for the message)."""
    if param is None or getattr(param, "param_type_name", None) != "option":
        return None
    tokens = list(args) if args is not None else sys.argv[1:]
    opts = list(getattr(param, "opts", ()))
    for i, token in enumerate(tokens):
        for opt in opts:
            if token == opt and i + 1 < len(tokens):
                return tokens[i + 1]
            if token.startswith(opt + "="):
                return token[len(opt) + 1 :]
    return None


class _OneLineErrorGroup(TyperGroup):
    """Command group that reports usage errors as one ``error: ...`` line on stderr."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # bare `smoothcert`: show help
                typer.echo(err.format_message(), err=True)
            else:
                ctx = getattr(err, "ctx", None)
                raw = _raw_option_value(args, getattr(err, "param", None))
                got = f" (got {raw!r})" if raw is not None else ""
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                typer.echo(f"error: {_one_line(err.format_message())}{got}{hint}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(EXIT_FAILURE)
        sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)


app = typer.Typer(
    name="smoothcert",
    cls=_OneLineErrorGroup,
    help="Certified robustness by randomized smoothing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Plain click help: the rich layout shows a "<bool>" type on every flag.
    rich_markup_mode=None,
)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's errors into one-line messages and exit statuses."""
    try:
        yield
    except InvalidParameterError as err:
        _fail(str(err), EXIT_INVALID)
    except SmoothCertError as err:
        _fail(str(err), EXIT_FAILURE)
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        _fail(f"{err.strerror or err}{where}", EXIT_FAILURE)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"smoothcert {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Certified robustness by randomized smoothing."""


class _RateColumn(ProgressColumn):
    """Examples per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "-- ex/s" if speed is None else f"{speed:.2f} ex/s", style="progress.data.speed"
        )


class _CertifiedColumn(ProgressColumn):
    """Running certified accuracy at radius 0 of the examples done in this session."""

    def render(self, task: Task) -> Text:
        seen = task.fields.get("seen", 0)
        if not seen:
            return Text("")
        return Text(f"acc {100 * task.fields['correct'] / seen:.1f}%", style="cyan")


LOG_EVERY_S = 10.0
"""Seconds between plain progress lines when stderr is not a terminal."""


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


_METHOD_OPTIONS = (
    "sigma",
    "sigmas",
    "sigma_estimator",
    "alpha_split",
    "n0",
    "n",
    "alpha",
    "beta",
    "alphabet",
    "kernel",
    "mask_id",
    "attacker",
    "tau",
    "target",
    "threat",
    "num_positions",
    "placeholder_id",
    "threat_d_max",
    "max_samples",
    "target_radii",
    "tolerance",
    "first_round",
    "growth",
    "bound",
    "targets",
    "final_share",
    "futility_z",
    "score_map",
    "temperature",
    "score_bound",
    "combiner",
    "logit_lipschitz",
    "field_betas",
    "field_vocab_sizes",
)
"""Method parameters the CLI accepts (each method takes a subset; see its parameter class)."""

_OPTION_FLAGS = {
    "sigmas": "--sigmas",
    "num_positions": "--suffix-length",
    "threat_d_max": "--d-max",
    "mask_id": "--mask-id",
    "placeholder_id": "--placeholder-id",
    "n": "--n",
    "target_radii": "--target-radius",
    "targets": "--target-point",
    "field_betas": "--field-beta",
    "field_vocab_sizes": "--field-vocab-size",
}

_COMMON_DEFAULTS: dict[str, Any] = {
    "sigma": 0.25,
    "n0": 100,
    "n": 10_000,
    "alpha": 0.001,
    "max_samples": 100_100,
    "sigmas": (0.25, 0.5, 1.0),
}
"""Defaults of the sampling parameters when a method takes them and none is given."""


def _bundled_names() -> tuple[str, str]:
    """Bundled models (with their sigmas) and datasets, for --help (no torch import)."""
    import json
    from importlib import resources

    try:
        # via the top package: importing smoothcert.models would import torch
        manifest = json.loads(
            resources.files("smoothcert").joinpath("models/weights/manifest.json").read_text()
        )
        sigmas: dict[str, list[float]] = {}
        for entry in manifest["files"].values():
            sigmas.setdefault(entry["model"], []).append(float(entry["sigma"]))
        models = "; ".join(
            f"{name} (sigma {', '.join(f'{s:g}' for s in sorted(v))})"
            for name, v in sorted(sigmas.items())
        )
    except (OSError, KeyError, ValueError):  # pragma: no cover - broken install
        models = "see smoothcert.models.list_models()"
    try:
        from smoothcert.data import dataset_splits, list_datasets

        datasets = "; ".join(
            f"{name} (splits {', '.join(dataset_splits(name))})" for name in list_datasets()
        )
    except Exception:  # pragma: no cover - broken install
        datasets = "see smoothcert.data.list_datasets()"
    return models, datasets


def _method_names() -> str:
    from smoothcert.methods.registry import method_names

    return ", ".join(method_names())


_MODELS_HELP, _DATASETS_HELP = _bundled_names()

# Options that `certify` and `attack` declare alike (typer copies each per command).
_ModelOption = Annotated[str, typer.Option(help=f"Bundled model: {_MODELS_HELP}.")]
_ModelSigmaOption = Annotated[
    float | None,
    typer.Option(help="Noise level of the model's weights (default: --sigma, or its only one)."),
]
_DatasetOption = Annotated[str, typer.Option(help=f"Bundled dataset: {_DATASETS_HELP}.")]
_SplitOption = Annotated[str, typer.Option(help="Dataset split.")]
_BatchSizeOption = Annotated[int, typer.Option(help="Noisy samples per forward pass.")]
_SkipOption = Annotated[int, typer.Option(help="Take every skip-th example.")]
_StartOption = Annotated[int, typer.Option(help="Position of the first example.")]
_SeedOption = Annotated[int, typer.Option(help="Run seed (per-example seeds derive from it).")]
_DeviceOption = Annotated[str, typer.Option(help="Device: cpu, cuda, cuda:1, mps.")]
_BackendOption = Annotated[str, typer.Option(help="Where to run: local or ray.")]
_WorkersOption = Annotated[
    int | None, typer.Option(help="Ray workers, each with its own model copy.")
]
_PlotOption = Annotated[
    bool, typer.Option("--plot/--no-plot", help="Write a PNG next to the results.")
]


def build_run_config(
    *,
    method: str,
    options: dict[str, Any],
    run_fields: dict[str, Any],
) -> Any:
    """The :class:`~smoothcert.runner.RunConfig` of a ``certify`` command line.

    ``options`` holds the method-parameter options the user gave (None when not given).
    A given option the method does not take is an error naming it and the method's
    parameters; missing ``sigma``/``n0``/``n``/``alpha`` get the CLI defaults, a missing
    ``alphabet`` the dataset's vocabulary size, a missing ``attacker`` ``"any"`` when the
    alphabet is smaller than the dataset's vocabulary (else the default ``"alphabet"``)
    and a missing ``beta`` the bundled model's training beta.

    Raises:
        InvalidParameterError: on an unknown method, an option of another method, or a
            value out of range.
    """
    import dataclasses

    from smoothcert.methods.registry import get_method
    from smoothcert.runner.config import RunConfig

    spec = get_method(method)
    check_dataset_fits(spec, run_fields["dataset"])
    fields = [f.name for f in dataclasses.fields(spec.params_type)]
    given = {k: v for k, v in options.items() if v is not None}
    foreign = [k for k in given if k not in fields]
    if foreign:
        flags = ", ".join(_OPTION_FLAGS.get(k, "--" + k.replace("_", "-")) for k in foreign)
        valid = ", ".join(
            _OPTION_FLAGS.get(k, "--" + k.replace("_", "-")) for k in fields if k in _METHOD_OPTIONS
        )
        raise InvalidParameterError(
            f"{flags} {'is not an option' if len(foreign) == 1 else 'are not options'} of "
            f"method {method!r}; valid options: {valid}"
        )
    params = dict(given)
    for key, value in _COMMON_DEFAULTS.items():
        # a sequential method's n is its budget, derived from max_samples
        if key in fields and key not in params and not (key == "n" and "max_samples" in fields):
            params[key] = value
    if "sigma_estimator" in fields and "sigma_estimator" not in params:
        params["sigma_estimator"] = max(params["sigmas"])  # the paper's choice
    if "alphabet" in fields and "alphabet" not in params:
        params["alphabet"] = _dataset_attribute(run_fields["dataset"], "vocab_size")
    if "attacker" in fields and "attacker" not in params:
        # the any-token threat wherever the attacker could write a token the kernel's
        # alphabet lacks (docs/hybrid.md, "Threat model"); listings: the whole vocabulary
        vocab = _dataset_attribute(run_fields["dataset"], "vocab_size")
        size = params.get("alphabet")
        if isinstance(size, int) and isinstance(vocab, int) and size < vocab:
            params["attacker"] = "any"
    if "threat" in fields and "threat" not in params:
        # a dataset that says which tokens each example may have edited (listings: the
        # description's words, not [CLS]/[SEP]/padding) is attacked there by default
        has_mask = _dataset_attribute(run_fields["dataset"], "eligible") is not None
        params["threat"] = "given" if has_mask else "anywhere"
    if "beta" in fields and "beta" not in params:
        beta = _model_beta(
            run_fields["model"], run_fields.get("model_sigma") or params.get("sigma")
        )
        if beta is not None:
            params["beta"] = beta
    if "field_vocab_sizes" in fields and "field_vocab_sizes" not in params:
        vocab = _dataset_attribute(run_fields["dataset"], "field_vocab_sizes")
        if vocab is not None:
            params["field_vocab_sizes"] = tuple(vocab)
    if "field_betas" in fields and "field_betas" not in params:
        betas = _model_field_betas(
            run_fields["model"], run_fields.get("model_sigma") or params.get("sigma")
        )
        if betas is not None:
            params["field_betas"] = betas
    if "logit_lipschitz" in fields and "logit_lipschitz" not in params:
        params["logit_lipschitz"] = _model_lipschitz(
            run_fields["model"], run_fields.get("model_sigma") or params.get("sigma")
        )
    return RunConfig(method=method, params=params, **run_fields)


def _model_lipschitz(model: str, sigma: float | None) -> float:
    """The certified ``lipschitz`` of a bundled model's weights (manifest), or an error."""
    from smoothcert.models import available_sigmas, list_models, weights_info

    hint = (
        "valid: a bundled certified-Lipschitz model (digits_lipschitz, fmnist_lipschitz), or pass "
        "--logit-lipschitz with the certified L2 constant of the model's logits"
    )
    if model not in list_models():
        raise InvalidParameterError(
            f"model = {model!r} has no certified Lipschitz constant in the manifest; {hint}"
        )
    if sigma is None:
        sigmas = available_sigmas(model)
        if len(sigmas) != 1:
            raise InvalidParameterError(
                f"--sigma is needed to find the weights of {model!r} and their certified "
                f"Lipschitz constant; valid values: {', '.join(str(x) for x in sigmas)}"
            )
        sigma = sigmas[0]
    value = weights_info(model, sigma).metadata.get("lipschitz")
    if value is None:
        raise InvalidParameterError(
            f"model = {model!r} (sigma {sigma!r}) has no certified Lipschitz constant; {hint}"
        )
    return float(value)


def _parse_points(texts: Sequence[str]) -> tuple[tuple[int, float], ...]:
    """``["2,0.25", ...]`` -> ``((2, 0.25), ...)`` for ``--target-point``."""
    points = []
    for text in texts:
        parts = text.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            points.append((int(parts[0]), float(parts[1])))
        except ValueError:
            raise InvalidParameterError(
                f"--target-point {text!r} is invalid; valid: D,R with D an integer number of "
                "edited tokens and R an L2 radius, e.g. 2,0.25"
            ) from None
    return tuple(points)


def check_dataset_fits(spec: Any, dataset: str) -> None:
    """Reject a bundled dataset whose examples do not fit the method's inputs (early)."""
    from smoothcert.data import dataset_kind, list_datasets

    if dataset in list_datasets():  # other names are reported by the runner's checks
        spec.check_dataset_kind(dataset_kind(dataset), dataset=dataset)


def _dataset_attribute(dataset: str, name: str) -> Any:
    """An attribute of a bundled dataset's first split (None if absent or not bundled)."""
    import numpy as np

    from smoothcert.data import dataset_splits, list_datasets, load_dataset

    if dataset not in list_datasets():
        return None
    value = getattr(load_dataset(dataset, split=dataset_splits(dataset)[0]), name, None)
    return int(value) if isinstance(value, (int, np.integer)) else value


def _model_field_betas(model: str, sigma: float | None) -> tuple[float, ...] | None:
    """The per-field betas a bundled tabular model was trained with (manifest), or None."""
    from smoothcert.models import available_sigmas, list_models, weights_info

    if model not in list_models():
        return None
    sigmas = available_sigmas(model)
    if sigma is None and len(sigmas) == 1:
        sigma = sigmas[0]
    if sigma is None:
        return None
    try:
        betas = weights_info(model, sigma).metadata.get("field_betas")
    except InvalidParameterError:
        return None
    return None if betas is None else tuple(float(b) for b in betas)


def _model_beta(model: str, sigma: float | None) -> float | None:
    from smoothcert.models import available_sigmas, list_models, weights_info

    if model not in list_models():
        return None
    sigmas = available_sigmas(model)
    if sigma is None:
        if len(sigmas) != 1:
            return None
        sigma = sigmas[0]
    try:
        return weights_info(model, sigma).beta
    except InvalidParameterError:
        return None


def _check_backend(backend: str) -> None:
    if backend not in ("local", "ray"):
        raise InvalidParameterError(f"backend = {backend!r} is invalid; valid values: local, ray")


def _prepare_run(
    config: Any,
    output: Path | None,
    *,
    device: str,
    backend: str,
    workers: int | None,
    ray_address: str | None = None,
    allow_large: bool = False,
) -> tuple[Path, Any]:
    """Resolve the result path, validate the run there and build its backend (None: local)."""
    from smoothcert.runner.config import default_run_stem
    from smoothcert.runner.run import validate_run

    path = (
        output if output is not None else _DEFAULT_RESULTS_DIR / f"{default_run_stem(config)}.jsonl"
    )
    validate_run(config, path, device=device, allow_large=allow_large)
    if backend != "ray":
        return path, None
    from smoothcert.runner.ray_backend import RayBackend

    return path, RayBackend(workers=workers, address=ray_address)


def _params_summary(config: Any) -> str:
    """The run's method parameters that are set, as ``k=v, ...`` for the start line."""
    return ", ".join(f"{k}={v}" for k, v in config.params.items() if v is not None)


def _print_run_report(path: Path, radii: Any, *, plot: bool, console: Console) -> None:
    """After a run: its report (and PNG next to it with ``plot``), then the result path."""
    _print_report(
        [path],
        radii,
        labels=None,
        latex=False,
        plot_path=path.with_suffix(".png") if plot else None,
        console=console,
    )
    console.print(f"results: {path}")


@app.command()
def certify(
    method: Annotated[
        str, typer.Option(help=f"Certification method: {_method_names()}.")
    ] = "cohen",
    model: _ModelOption = "digits_cnn",
    model_sigma: _ModelSigmaOption = None,
    dataset: _DatasetOption = "digits",
    split: _SplitOption = "test",
    sigma: Annotated[
        float | None,
        typer.Option(help="Gaussian noise std (input units) (cohen*, soft, hybrid; default 0.25)."),
    ] = None,
    n0: Annotated[
        int | None, typer.Option("--n0", help="Selection samples per example (default 100).")
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("-n", "--n", help="Estimation samples per example (default 10000)."),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Failure probability per example (default 0.001).")
    ] = None,
    beta: Annotated[
        float | None,
        typer.Option(help="Token substitution probability (tokens, hybrid; default: the model's)."),
    ] = None,
    alphabet: Annotated[
        int | None,
        typer.Option(help="Token alphabet size V (tokens, hybrid; default: the dataset's)."),
    ] = None,
    kernel: Annotated[
        str | None, typer.Option(help="Token kernel: uniform or mask (tokens, hybrid).")
    ] = None,
    mask_id: Annotated[int | None, typer.Option(help="Mask token id (kernel mask).")] = None,
    attacker: Annotated[
        str | None,
        typer.Option(
            help="Tokens the attacker may write: alphabet or any (tokens, hybrid*; default: "
            "any when --alphabet is smaller than the dataset's vocabulary, else alphabet)."
        ),
    ] = None,
    tau: Annotated[
        float | None, typer.Option(help="Threshold: 0.5 majority, or the filter's flag threshold.")
    ] = None,
    target: Annotated[
        int | None,
        typer.Option(help="Safety-filter mode: the class flagged when P(class) >= tau."),
    ] = None,
    sigmas: Annotated[
        list[float] | None,
        typer.Option(help="Dual: a noise level to choose from (repeat; default 0.25 0.5 1.0)."),
    ] = None,
    sigma_estimator: Annotated[
        float | None,
        typer.Option(help="Dual: the sigma estimator's noise level (default max of --sigmas)."),
    ] = None,
    alpha_split: Annotated[
        float | None,
        typer.Option(help="Dual: share of alpha for the sigma estimator (default 0.5)."),
    ] = None,
    threat: Annotated[
        str | None,
        typer.Option(help="Text threat: anywhere, append_suffix, last_d (tokens, hybrid)."),
    ] = None,
    suffix_length: Annotated[
        int | None, typer.Option(help="Positions D for append_suffix / last_d.")
    ] = None,
    placeholder_id: Annotated[
        int | None, typer.Option(help="Appended placeholder token id (append_suffix).")
    ] = None,
    d_max: Annotated[int | None, typer.Option(help="Largest number of edits d to certify.")] = None,
    max_samples: Annotated[
        int | None,
        typer.Option(help="Sequential: most samples per example, n0 included (default 100100)."),
    ] = None,
    target_radius: Annotated[
        list[float] | None,
        typer.Option(help="Sequential target mode: a radius to decide (repeat for several)."),
    ] = None,
    target_point: Annotated[
        list[str] | None,
        typer.Option(help="Sequential hybrid: a point d,r to decide (repeat for several)."),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Sequential precision mode: stop when the radius is known to this."),
    ] = None,
    first_round: Annotated[
        int | None, typer.Option(help="Sequential: samples of the first round (default 100).")
    ] = None,
    growth: Annotated[
        float | None, typer.Option(help="Sequential: round growth factor (default 2).")
    ] = None,
    bound: Annotated[
        str | None,
        typer.Option(
            help="Sequential confidence sequence: union or mixture (default union); "
            "cohen-combined: cp, hoeffding, bernstein or betting; soft-combined: hoeffding, "
            "bernstein or betting (betting: combiner mono or top2)."
        ),
    ] = None,
    final_share: Annotated[
        float | None,
        typer.Option(help="Sequential union bound: share of alpha at the last round (0.5)."),
    ] = None,
    futility_z: Annotated[
        float | None,
        typer.Option(help="Sequential: give up on targets out of reach at rate + z s.e."),
    ] = None,
    score_map: Annotated[
        str | None,
        typer.Option(help="Soft: score of the logits: hardmax, softmax or sparsemax (softmax)."),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Soft, lipschitz: temperature t > 0, the map is applied to t * logits "
            "(soft: 1; lipschitz: required)."
        ),
    ] = None,
    score_bound: Annotated[
        str | None,
        typer.Option(
            help="Soft, lipschitz: bound on the mean score: hoeffding, bernstein or betting (keeps "
            "per-class score histograms in the records) (bernstein)."
        ),
    ] = None,
    combiner: Annotated[
        str | None,
        typer.Option(
            help="cohen-combined/soft-combined: multi-class combiner: mono, top2, cpm or "
            "bonferroni (top2)."
        ),
    ] = None,
    logit_lipschitz: Annotated[
        float | None,
        typer.Option(
            help="lipschitz: certified L2 Lipschitz constant of the logits (default: the "
            "bundled model's, from its manifest; a smaller one is refused)."
        ),
    ] = None,
    field_beta: Annotated[
        list[float] | None,
        typer.Option(
            help="hybrid-fields: substitution probability of each categorical field, in column "
            "order (repeat; default: the model's, from its manifest)."
        ),
    ] = None,
    field_vocab_size: Annotated[
        list[int] | None,
        typer.Option(
            help="hybrid-fields: alphabet size of each categorical field (repeat; default: the "
            "dataset's)."
        ),
    ] = None,
    batch_size: _BatchSizeOption = 1000,
    examples_per_batch: Annotated[
        int, typer.Option(help="Examples sharing each forward pass (same records).")
    ] = 1,
    num_examples: Annotated[
        int | None, typer.Option(help="Examples to certify (default: all selected).")
    ] = None,
    skip: _SkipOption = 1,
    start: _StartOption = 0,
    seed: _SeedOption = 0,
    device: _DeviceOption = "cpu",
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16/fp16 autocast (changes the certified model).")
    ] = "fp32",
    compile_model: Annotated[
        bool,
        typer.Option("--compile/--no-compile", help="torch.compile the model (hashed)."),
    ] = False,
    channels_last: Annotated[
        bool,
        typer.Option("--channels-last/--no-channels-last", help="Channels-last memory format."),
    ] = False,
    backend: _BackendOption = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local one).")
    ] = None,
    workers: _WorkersOption = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Result file (default: results/<model>_sigma<sigma>[_<hash>].jsonl)."),
    ] = None,
    top2: Annotated[
        bool, typer.Option("--top2/--no-top2", help="Same as --method cohen-top2.")
    ] = False,
    allow_large: Annotated[
        bool,
        typer.Option(
            "--allow-large/--no-allow-large", help="Allow more than 10^9 samples per example."
        ),
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    plot: _PlotOption = True,
    radii: Annotated[
        str | None, typer.Option(help="Radii of the summary table, e.g. 0,0.25,0.5.")
    ] = None,
) -> None:
    """Certify a dataset split with any method; re-run the same command to resume."""
    from smoothcert._validation import check_int
    from smoothcert.certificates.gaussian import max_certifiable_radius
    from smoothcert.reports import parse_radii

    console = _stderr_console()
    with _user_errors():
        if top2:
            if method not in ("cohen", "cohen-top2"):
                raise InvalidParameterError(
                    f"--top2 with --method {method} is invalid; valid: --top2 with cohen"
                )
            method = "cohen-top2"
        check_int(examples_per_batch, name="examples_per_batch", minimum=1)
        _check_backend(backend)
        if backend == "local" and (ray_address is not None or workers is not None):
            raise InvalidParameterError(
                "--ray-address / --workers are invalid with --backend local; valid: add "
                "--backend ray"
            )
        grid = parse_radii(radii) if radii is not None else None
        run_fields = {
            "model": model,
            "model_sigma": model_sigma,
            "dataset": dataset,
            "split": split,
            "batch_size": batch_size,
            "num_examples": num_examples,
            "skip": skip,
            "start": start,
            "seed": seed,
            "precision": precision,
            "compile": compile_model,
            "channels_last": channels_last,
        }
        options = {
            "sigma": sigma,
            "n0": n0,
            "n": n,
            "alpha": alpha,
            "beta": beta,
            "alphabet": alphabet,
            "kernel": kernel,
            "mask_id": mask_id,
            "attacker": attacker,
            "tau": tau,
            "target": target,
            "threat": threat,
            "num_positions": suffix_length,
            "placeholder_id": placeholder_id,
            "threat_d_max": d_max,
            "max_samples": max_samples,
            "target_radii": tuple(target_radius) if target_radius else None,
            "targets": _parse_points(target_point) if target_point else None,
            "tolerance": tolerance,
            "first_round": first_round,
            "growth": growth,
            "bound": bound,
            "final_share": final_share,
            "futility_z": futility_z,
            "sigmas": tuple(sigmas) if sigmas else None,
            "sigma_estimator": sigma_estimator,
            "alpha_split": alpha_split,
            "score_map": score_map,
            "temperature": temperature,
            "score_bound": score_bound,
            "combiner": combiner,
            "logit_lipschitz": logit_lipschitz,
            "field_betas": tuple(field_beta) if field_beta else None,
            "field_vocab_sizes": tuple(field_vocab_size) if field_vocab_size else None,
        }
        config = build_run_config(method=method, options=options, run_fields=run_fields)
        params = config.method_params()
        from smoothcert.runner.run import RunProgress, run_certification

        path, run_backend = _prepare_run(
            config,
            output,
            device=device,
            backend=backend,
            workers=workers,
            ray_address=ray_address,
            allow_large=allow_large,
        )
        per_example = config.samples_per_example()
        if config.method in ("cohen", "cohen-top2"):
            best = max_certifiable_radius(
                n=params.n,  # type: ignore[attr-defined]
                alpha=params.alpha / (2 if config.method == "cohen-top2" else 1),  # type: ignore[attr-defined]
                sigma=params.sigma,  # type: ignore[attr-defined]
            )
            if best == 0.0:
                console.print(
                    f"warning: with n={params.n} and alpha={params.alpha:g} no example can be "  # type: ignore[attr-defined]
                    "certified (every result will abstain); increase -n"
                )
        summary = _params_summary(config)
        console.print(
            f"certifying {dataset}/{split} with {model} ({config.method}: {summary}) on "
            f"{device} ({backend}) -> {path}; {per_example:,} forward samples per example"
        )

        bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            _CertifiedColumn(),
            console=console,
            disable=not progress,
        )
        task_id = bar.add_task("certify", total=None, seen=0, correct=0)
        state = {"done": 0, "total": 0}
        # Without a terminal (a log file, a batch job) rich draws no live bar: print a
        # plain progress line every LOG_EVERY_S seconds instead.
        log_lines = progress and not console.is_terminal
        clock = {"start": time.monotonic(), "last": time.monotonic()}

        def on_progress(event: RunProgress) -> None:
            state["done"], state["total"] = event.done, event.total
            if event.record is None:  # first event: everything is loaded and checked
                if event.resumed:
                    console.print(
                        f"resuming: {event.resumed} of {event.total} examples already in {path}"
                    )
                bar.reset(task_id, total=event.total, completed=event.done, seen=0, correct=0)
                if not log_lines:
                    bar.start()
                    state["bar"] = 1
                clock["start"] = clock["last"] = time.monotonic()
                return
            task = bar.tasks[task_id]
            bar.update(
                task_id,
                completed=event.done,
                seen=task.fields["seen"] + 1,
                correct=task.fields["correct"] + int(bool(event.record["correct"])),
            )
            now = time.monotonic()
            if log_lines and (now - clock["last"] >= LOG_EVERY_S or event.done == event.total):
                clock["last"] = now
                new = event.done - event.resumed
                rate = new / max(now - clock["start"], 1e-9)
                eta = (event.total - event.done) / rate if rate > 0 else float("inf")
                console.print(
                    f"certify {event.done}/{event.total} ({rate:.2f} ex/s, "
                    f"eta {_format_seconds(eta)})"
                )

        try:
            run_certification(
                config,
                path,
                device=device,
                progress=on_progress,
                backend=run_backend,
                examples_per_batch=examples_per_batch,
                allow_large=allow_large,
            )
        except KeyboardInterrupt:
            console.print(
                f"interrupted after {state['done']} of {state['total']} examples; every "
                f"finished example is saved in {path}: re-run the same command to resume"
            )
            raise typer.Exit(130) from None
        finally:
            if state.get("bar"):
                bar.stop()
        _print_run_report(path, grid, plot=plot, console=console)


def _print_report(
    paths: Sequence[Path],
    radii: Any,
    *,
    labels: Sequence[str] | None,
    latex: bool,
    plot_path: Path | None,
    console: Console,
) -> None:
    """Print one table per claim (and a (d, r) table per hybrid file); write the plots."""
    from smoothcert.reports import (
        claim_heading,
        dr_table,
        dual_table,
        gap_table,
        group_by_claim,
        is_dual,
        is_sequential,
        latex_table,
        load_many,
        markdown_table,
        plot_certified_accuracy,
        plot_dr_heatmap,
        plot_samples_histogram,
        radius_grid,
        samples_table,
    )

    files = load_many(paths, labels=labels if labels else None)
    # attack files (claim "empirical", not certificates) get their own table and figure
    groups = group_by_claim([f for f in files if f.claim != "empirical"])
    for group in groups:
        if len(groups) > 1 or group[0].claim != "majority":
            typer.echo(f"{claim_heading(group[0].claim)}:")
        typer.echo(latex_table(group, radii) if latex else markdown_table(group, radii))
        if plot_path is not None and any(len(f) for f in group):
            target = (
                plot_path
                if len(groups) == 1
                else plot_path.with_name(f"{plot_path.stem}_{group[0].claim}{plot_path.suffix}")
            )
            console.print(f"plot: {plot_certified_accuracy(group, target)}")
    if any(f.claim == "empirical" for f in files):
        from smoothcert.reports.attack import (
            ATTACK_HEADING,
            FIELDS_ATTACK_HEADING,
            HYBRID_ATTACK_HEADING,
            attack_table,
            fields_attack_table,
            hybrid_attack_table,
            is_fields_attack,
            is_grid_attack,
            is_hybrid_attack,
            plot_certified_vs_empirical,
        )

        l2 = [f for f in files if f.claim == "empirical" and not is_grid_attack(f)]
        if l2:
            typer.echo(f"\n{ATTACK_HEADING}:")
            typer.echo(attack_table(files, radii))
            if plot_path is not None and any(len(f) for f in l2):
                target = plot_path.with_name(f"{plot_path.stem}_attack{plot_path.suffix}")
                console.print(f"plot: {plot_certified_vs_empirical(files, target)}")
        if any(is_hybrid_attack(f) for f in files):
            typer.echo(f"\n{HYBRID_ATTACK_HEADING}:")
            typer.echo(hybrid_attack_table(files))
        if any(is_fields_attack(f) for f in files):
            typer.echo(f"\n{FIELDS_ATTACK_HEADING}:")
            typer.echo(fields_attack_table(files))
    duals = [f for f in files if is_dual(f)]
    if duals:
        typer.echo("\ndual smoothing: the sigma estimator's routing and what limits the radius:")
        typer.echo(dual_table(duals))
        if len(duals) < len(files):
            typer.echo("\ndual against the best of the other files at each radius:")
            typer.echo(gap_table(files, radius_grid(files, radii)))
    if duals or any(is_sequential(f) for f in files):
        typer.echo("\nforward samples (noisy forward passes) per input, selection included:")
        typer.echo(samples_table(files))
        if plot_path is not None:
            hist = plot_path.with_name(f"{plot_path.stem}_samples{plot_path.suffix}")
            console.print(f"samples: {plot_samples_histogram(files, hist)}")
    for f in files:
        if f.torn_tail:
            console.print(f"note: ignored an incomplete last line of {f.path}")
        if len(f) and any(r.get("radius_curve") for r in f.records):
            typer.echo(
                f"\n{f.label}: {claim_heading(f.claim)}, over (d edited tokens, L2 radius r):"
            )
            typer.echo(dr_table(f))
            if plot_path is not None:
                heat = plot_path.with_name(f"{Path(f.path).stem}_dr.png")
                console.print(f"heatmap: {plot_dr_heatmap(f, heat)}")


def _print_filter_report(
    paths: Sequence[Path],
    radii: Any,
    *,
    labels: Sequence[str] | None,
    plot_path: Path | None,
    calibrations: Sequence[Path] = (),
) -> None:
    """``report --filter``: the safety-filter tables (reports/filter.py) and heatmaps.

    Each ``--calibration`` JSON applies to the files certified at its tau; each such file
    must fit it (:func:`smoothcert.reports.filter.check_calibration`).
    """
    import json

    from smoothcert.reports import filter_summary, filter_tables, load_many, plot_filter_heatmaps
    from smoothcert.reports.filter import FILTER_RADII

    files = load_many(paths, labels=labels if labels else None)
    grid = FILTER_RADII if radii is None else radii
    cals = [json.loads(Path(c).read_text()) for c in calibrations]
    used: set[int] = set()
    summaries = []
    for f in files:
        match = [i for i, c in enumerate(cals) if float(c["tau"]) == f.params.get("tau")]
        used.update(match)
        cal = cals[match[0]] if match else None
        summaries.append(filter_summary(f, radii=grid, calibration=cal))
    for i, path in enumerate(calibrations):
        if i not in used:
            raise InvalidParameterError(
                f"--calibration {path} (tau = {cals[i]['tau']!r}) fits none of the files; "
                f"valid: a file certified or re-certified at --tau {cals[i]['tau']!r}"
            )
    typer.echo(filter_tables(summaries))
    if plot_path is not None:
        for heat in plot_filter_heatmaps(files, plot_path):
            _stderr_console().print(f"heatmap: {heat}")


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Result files (.jsonl).")],
    radii: Annotated[
        str | None,
        typer.Option(help="Comma-separated radii, e.g. 0,0.25,0.5 (default: automatic)."),
    ] = None,
    latex: Annotated[bool, typer.Option("--latex", help="Print a LaTeX tabular.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a certified accuracy vs radius PNG here.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="Column label, once per file (default: stems).")
    ] = None,
    filter_view: Annotated[
        bool,
        typer.Option(
            "--filter",
            help="Safety-filter files: per setting, clean and certified detection on unsafe "
            "pairs at d = 0,1,2,4,8 and --radii (default 0,0.1,0.25,0.5), false positives on "
            "benign pairs, seconds per pair; with --plot, one (d, r) heatmap per file.",
        ),
    ] = False,
    calibration: Annotated[
        list[Path] | None,
        typer.Option(
            help="--filter: a `smoothcert calibrate --output` JSON (repeatable); checked "
            "against the files at its tau (disjoint pairs, same filter) and shown.",
        ),
    ] = None,
) -> None:
    """Certified accuracy per radius, ACR and abstention rate; one table per claim.

    Hybrid files add a certified-accuracy table over (d edited tokens, L2 radius r) and,
    with --plot, a heatmap PNG next to the plot. A dual file adds its routing table and,
    next to single-sigma files, its gap to the best of them at each radius. With a
    sequential or dual file, a table of the forward samples per input of every file
    (and, with --plot, their histogram).
    """
    from smoothcert.reports import parse_radii

    with _user_errors():
        grid = parse_radii(radii) if radii is not None else None
        if calibration and not filter_view:
            raise InvalidParameterError(
                "--calibration without --filter is invalid; valid: report --filter "
                "--calibration TAU.json FILES"
            )
        if filter_view:
            _print_filter_report(
                results, grid, labels=label, plot_path=plot, calibrations=calibration or ()
            )
            return
        _print_report(
            results, grid, labels=label, latex=latex, plot_path=plot, console=_stderr_console()
        )


@app.command()
def attack(
    model: _ModelOption = "digits_cnn",
    model_sigma: _ModelSigmaOption = None,
    dataset: _DatasetOption = "digits",
    split: _SplitOption = "test",
    method: Annotated[
        str,
        typer.Option(
            help="l2 (attack-l2: PGD on a Gaussian-smoothed classifier), hybrid "
            "(attack-hybrid: token edits + image PGD on a smoothed text+image filter) or "
            "fields (attack-fields: field changes + continuous PGD on a smoothed table row)."
        ),
    ] = "l2",
    sigma: Annotated[
        float | None,
        typer.Option(help="Gaussian noise std of the smoothed classifier (default 0.25)."),
    ] = None,
    radii: Annotated[
        str | None,
        typer.Option(
            help="Attacked L2 radii, input units (pixels in [0,1]), increasing (default "
            "0.25,0.5,0.75,1.0; hybrid: 0,0.25,0.5)."
        ),
    ] = None,
    beta: Annotated[
        float | None, typer.Option(help="Hybrid: token substitution probability (the model's).")
    ] = None,
    alphabet: Annotated[
        int | None, typer.Option(help="Hybrid: token alphabet size V (the dataset's).")
    ] = None,
    threat: Annotated[
        str | None, typer.Option(help="Hybrid: text threat (default: the dataset's positions).")
    ] = None,
    target: Annotated[int | None, typer.Option(help="Hybrid: the filter's flagged class.")] = None,
    tau: Annotated[float | None, typer.Option(help="Hybrid: the flagging threshold.")] = None,
    d_max: Annotated[
        int | None,
        typer.Option(
            help="Hybrid: largest number of substituted tokens (2); fields: of changed "
            "fields (all)."
        ),
    ] = None,
    candidates: Annotated[
        int | None, typer.Option(help="Hybrid: token substitutions scored per edit (32).")
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(help="Fields: alternations of field changes and continuous PGD (2)."),
    ] = None,
    candidate_ranking: Annotated[
        str | None,
        typer.Option(
            help="Hybrid: random token candidates, or gradient (GCG-style, from the model's "
            "embedding gradient; needs token_embedding_matrix/forward_embeddings)."
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="PGD steps per radius (default 20).")] = None,
    step_size: Annotated[
        float | None, typer.Option(help="PGD step length (default 2.5 r / steps).")
    ] = None,
    noise_samples: Annotated[
        int | None, typer.Option(help="Noise draws per gradient step (default 8).")
    ] = None,
    eval_n: Annotated[
        int | None,
        typer.Option(help="Noisy samples evaluating the smoothed classifier (default 1000)."),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Softmax temperature of the attacked score (1).")
    ] = None,
    score: Annotated[
        str | None, typer.Option(help="Attacked score: softmax (SmoothAdv) or logits.")
    ] = None,
    random_start: Annotated[
        bool, typer.Option("--random-start/--no-random-start", help="Random PGD start.")
    ] = True,
    clip: Annotated[
        bool, typer.Option("--clip/--no-clip", help="Keep attacked pixels in [0, 1].")
    ] = True,
    alpha: Annotated[
        float | None, typer.Option(help="Level of the flip test per radius (default 0.001).")
    ] = None,
    batch_size: _BatchSizeOption = 1000,
    examples_per_batch: Annotated[
        int, typer.Option(help="Examples sharing each evaluation pass (same records).")
    ] = 1,
    num_examples: Annotated[
        int | None, typer.Option(help="Examples to attack (default: all selected).")
    ] = None,
    skip: _SkipOption = 1,
    start: _StartOption = 0,
    seed: _SeedOption = 0,
    device: _DeviceOption = "cpu",
    backend: _BackendOption = "local",
    workers: _WorkersOption = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Result file (default: results/<model>_attack-l2_<hash>.jsonl)."),
    ] = None,
    plot: _PlotOption = True,
) -> None:
    """Attack the smoothed classifier (L2 PGD, SmoothAdv) at each radius: empirical robustness.

    Writes a normal result file (method attack-l2 or attack-hybrid, claim "empirical": NOT
    a certificate); `smoothcert report CERT.jsonl ATTACK.jsonl` compares it with certified
    curves (hybrid: the attack's success rate per (d, r) next to the certified region).
    Re-run the same command to resume.
    """
    from smoothcert._validation import check_int

    console = _stderr_console()
    with _user_errors():
        check_int(examples_per_batch, name="examples_per_batch", minimum=1)
        _check_backend(backend)
        if method not in ("l2", "hybrid", "fields"):
            raise InvalidParameterError(
                f"method = {method!r} is invalid; valid values: l2, hybrid, fields"
            )
        if radii is None:
            radii = "0.25,0.5,0.75,1.0" if method == "l2" else "0,0.25,0.5"
        grid: list[float] = []
        for item in radii.split(","):
            try:
                grid.append(float(item))
            except ValueError:
                raise InvalidParameterError(
                    f"radius = {item.strip()!r} is invalid; valid: comma-separated numbers "
                    "> 0, increasing, e.g. 0.25,0.5"
                ) from None
        run_fields = {
            "model": model,
            "model_sigma": model_sigma,
            "dataset": dataset,
            "split": split,
            "batch_size": batch_size,
            "num_examples": num_examples,
            "skip": skip,
            "start": start,
            "seed": seed,
        }
        options = {
            "sigma": sigma,
            "radii": tuple(grid),
            "steps": steps,
            "step_size": step_size,
            "noise_samples": noise_samples,
            "eval_n": eval_n,
            "temperature": temperature,
            "score": score,
            "random_start": random_start,
            "clip": clip,
            "alpha": alpha,
        }
        if method == "hybrid":
            options = {
                "sigma": sigma,
                "radii": tuple(grid),
                "steps": steps,
                "step_size": step_size,
                "noise_samples": noise_samples,
                "n": eval_n if eval_n is not None else 1000,
                "n0": 0,
                "alpha": alpha,
                "beta": beta,
                "alphabet": alphabet,
                "threat": threat,
                "target": target,
                "tau": tau,
                "attack_d_max": d_max,
                "candidates": candidates,
                "candidate_ranking": candidate_ranking,
                "rounds": rounds,
                "temperature": temperature,
                "score": score,
            }
        elif method == "fields":
            options = {
                "sigma": sigma,
                "radii": tuple(grid),
                "steps": steps,
                "step_size": step_size,
                "noise_samples": noise_samples,
                "rounds": rounds,
                "eval_n": eval_n,
                "alpha": alpha,
                "attack_d_max": d_max,
                "beta": beta,
                "alphabet": alphabet,
                "threat": threat,
                "target": target,
                "tau": tau,
                "candidates": candidates,
                "candidate_ranking": candidate_ranking,
                "temperature": temperature,
                "score": score,
            }
        else:
            options.update(
                beta=beta,
                alphabet=alphabet,
                threat=threat,
                target=target,
                tau=tau,
                attack_d_max=d_max,
                candidates=candidates,
                candidate_ranking=candidate_ranking,
                rounds=rounds,
            )
        config = build_run_config(method=f"attack-{method}", options=options, run_fields=run_fields)
        from smoothcert.runner.run import RunProgress, run_certification

        path, run_backend = _prepare_run(
            config, output, device=device, backend=backend, workers=workers
        )
        summary = _params_summary(config)
        console.print(
            f"attacking {dataset}/{split} with {model} ({config.method}: {summary}) on {device} "
            f"({backend}) -> {path}"
        )
        clock = {"last": time.monotonic()}

        def on_progress(event: RunProgress) -> None:
            now = time.monotonic()
            if (
                event.record is None
                or now - clock["last"] >= LOG_EVERY_S
                or event.done == event.total
            ):
                clock["last"] = now
                console.print(f"attack {event.done}/{event.total}")

        run_certification(
            config,
            path,
            device=device,
            progress=on_progress,
            backend=run_backend,
            examples_per_batch=examples_per_batch,
        )
        _print_run_report(path, None, plot=plot, console=console)


@app.command()
def recertify(
    results: Annotated[Path, typer.Argument(help="A result file (.jsonl), version 1 or 2.")],
    output: Annotated[Path, typer.Option(help="The new result file.")],
    method: Annotated[
        str | None,
        typer.Option(
            help="Decide with another method of the same sampling (cohen <-> cohen-top2)."
        ),
    ] = None,
    top2: Annotated[
        bool, typer.Option("--top2/--no-top2", help="Same as --method cohen-top2.")
    ] = False,
    alpha: Annotated[float | None, typer.Option(help="New failure probability.")] = None,
    bound: Annotated[
        str | None,
        typer.Option(
            help="Re-decide with this bound: cp (votes only), hoeffding, bernstein or betting "
            "(combiner mono or top2; soft files need the histograms of a --score-bound "
            "betting run). Default: the file's."
        ),
    ] = None,
    combiner: Annotated[
        str | None,
        typer.Option(
            help="Re-decide with this combiner: mono, top2, cpm or bonferroni. Default: the file's."
        ),
    ] = None,
    tau: Annotated[
        float | None,
        typer.Option(
            help="Re-decide a tokens/hybrid file at this threshold in (0, 1) (e.g. the "
            "safety filter's tau from `smoothcert calibrate`). Default: the file's."
        ),
    ] = None,
) -> None:
    """Recompute certificates from the saved evidence (no model, no sampling)."""
    from smoothcert.results.recertify import recertify as run_recertify

    with _user_errors():
        if top2 and (bound is not None or combiner is not None):
            if combiner not in (None, "top2"):
                raise InvalidParameterError(
                    f"--top2 with --combiner {combiner} is invalid; valid: one of them"
                )
            combiner = "top2"
        elif top2:
            if method not in (None, "cohen-top2"):
                raise InvalidParameterError(
                    f"--top2 with --method {method} is invalid; valid: one of them"
                )
            method = "cohen-top2"
        written = run_recertify(
            results, output, method=method, alpha=alpha, bound=bound, combiner=combiner, tau=tau
        )
        _print_report(
            [written], None, labels=None, latex=False, plot_path=None, console=_stderr_console()
        )
        typer.echo(f"wrote {written}", err=True)


@app.command()
def calibrate(
    results: Annotated[
        Path,
        typer.Argument(help="A tokens/hybrid safety-filter result file (calibration split)."),
    ],
    fp_rate: Annotated[
        float, typer.Option(help="Target false-positive rate on benign pairs, in (0, 1).")
    ],
    output: Annotated[
        Path | None, typer.Option(help="Also write the calibration as JSON here.")
    ] = None,
) -> None:
    """Choose a safety filter's tau on benign calibration pairs (never the test split).

    Prints tau such that the smoothed filter's false-positive rate on benign pairs like
    these is at most --fp-rate (marginal split-conformal guarantee, Monte Carlo error
    included; see smoothcert.results.calibration). Certify with `certify --tau`, or
    re-decide a test run with `recertify --tau`.
    """
    import json

    from smoothcert.results.calibration import calibrate_file

    with _user_errors():
        cal = calibrate_file(results, fp_rate=fp_rate)
        typer.echo(
            f"tau = {cal.tau!r}: the smoothed filter's benign false-positive rate is at most "
            f"{cal.guarantee:.4g} (target {cal.fp_rate:g}; {cal.num_benign} benign calibration "
            f"pairs, upper bounds at alpha {cal.alpha:g}; rank {cal.rank}, u_(k) = "
            f"{cal.threshold_upper:.6g}); on these pairs: {cal.calibration_fp_upper:.2%} "
            f"upper bound >= tau, {cal.calibration_fp_point:.2%} point estimate >= tau"
        )
        if output is not None:
            output.write_text(json.dumps(cal.to_dict()) + "\n")
            typer.echo(f"wrote {output}", err=True)


@app.command()
def export(
    results: Annotated[Path, typer.Argument(help="A result file (.jsonl).")],
    format: Annotated[str, typer.Option("--format", help="Export format: tsv.")] = "tsv",
    output: Annotated[
        Path | None, typer.Option(help="Output file (default: standard output).")
    ] = None,
) -> None:
    """Export a result file (tsv: idx label predict radius correct time; -1 = abstain)."""
    from smoothcert.reports import export_tsv, load_results, tsv_text

    with _user_errors():
        if format != "tsv":
            raise InvalidParameterError(f"format = {format!r} is invalid; valid values: tsv")
        result = load_results(results)
        if output is None:
            typer.echo(tsv_text(result), nl=False)
        else:
            export_tsv(result, output)
            typer.echo(f"wrote {output}", err=True)


@app.command()
def radius(
    k: Annotated[int, typer.Option("--k", help="Count of the top class among n.")],
    n: Annotated[int, typer.Option("-n", "--n", help="Number of estimation samples.")],
    sigma: Annotated[float, typer.Option(help="Noise std (input units).")],
    alpha: Annotated[float, typer.Option(help="Failure probability.")] = 0.001,
    top2: Annotated[bool, typer.Option("--top2", help="Top-two certificate.")] = False,
    k_runner_up: Annotated[
        int | None,
        typer.Option(help="Runner-up count for --top2 (default n - k, conservative)."),
    ] = None,
) -> None:
    """Clopper-Pearson bound and certified L2 radius for counts, and the best possible radius."""
    from smoothcert._validation import check_int, check_positive, check_probability_level
    from smoothcert.certificates.gaussian import (
        gaussian_radius,
        gaussian_radius_top2,
        max_certifiable_radius,
    )
    from smoothcert.stats.binomial import clopper_pearson_lower, clopper_pearson_upper

    with _user_errors():
        n = check_int(n, name="n", minimum=1)
        k = check_int(k, name="k", minimum=0, maximum=n)
        sigma = check_positive(sigma, name="sigma")
        alpha = check_probability_level(alpha)
        if not top2:
            if k_runner_up is not None:
                raise InvalidParameterError(
                    f"k_runner_up = {k_runner_up} is invalid without --top2; valid: omit it"
                )
            p_lower = float(clopper_pearson_lower(k, n, alpha=alpha))
            r = float(gaussian_radius(p_lower, sigma=sigma))
            typer.echo(
                f"p_lower = {p_lower:.6f}  (one-sided Clopper-Pearson lower bound, "
                f"k={k} of n={n}, alpha={alpha:g})"
            )
            verdict = f"{r:.6f}" if p_lower > 0.5 else "0  (abstain: p_lower <= 1/2)"
            typer.echo(f"radius  = {verdict}  (sigma={sigma:g}; L2, input units)")
            best = max_certifiable_radius(n=n, alpha=alpha, sigma=sigma)
        else:
            kb = n - k if k_runner_up is None else k_runner_up
            kb = check_int(kb, name="k_runner_up", minimum=0, maximum=n - k)
            p_lower = float(clopper_pearson_lower(k, n, alpha=alpha / 2))
            p_upper = min(float(clopper_pearson_upper(kb, n, alpha=alpha / 2)), 1.0 - p_lower)
            typer.echo(
                f"p_lower = {p_lower:.6f}  (one-sided Clopper-Pearson lower bound, "
                f"k={k} of n={n}, alpha/2={alpha / 2:g})"
            )
            typer.echo(
                f"p_upper = {p_upper:.6f}  (runner-up upper bound, k={kb}, alpha/2={alpha / 2:g})"
            )
            if p_lower > p_upper and p_upper > 0:
                r = float(gaussian_radius_top2(p_lower, p_upper, sigma=sigma))
                verdict = f"{r:.6f}"
            else:
                verdict = "0  (abstain: p_lower <= p_upper)"
            typer.echo(f"radius  = {verdict}  (sigma={sigma:g}; L2, input units)")
            best = max_certifiable_radius(n=n, alpha=alpha / 2, sigma=sigma)
        typer.echo(
            f"max certifiable radius with n={n}, alpha={alpha:g}: {best:.6f} "
            f"(= {best / sigma:.3f} sigma)"
        )


@app.command()
def train(
    sigma: Annotated[
        list[float] | None,
        typer.Option(help="Noise level to train at; repeat for several (default 0.25 0.5 1.0)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Where to write weights (default: overwrite the bundled ones)."),
    ] = None,
    model: Annotated[str, typer.Option(help="Bundled model name.")] = "digits_cnn",
    epochs: Annotated[
        int | None, typer.Option(help="Epochs per sigma (default: built in).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    device: Annotated[str, typer.Option(help="Device: cpu, cuda, cuda:1, mps.")] = "cpu",
    threads: Annotated[
        int, typer.Option(help="CPU threads torch trains with (results depend on it).")
    ] = 1,
) -> None:
    """Train a bundled model at the given noise levels and save its weights (sha256-listed)."""
    with _user_errors():
        from smoothcert.models.train import train_all

        kwargs: dict[str, Any] = {
            "name": model,
            "seed": seed,
            "device": device,
            "threads": threads,
        }
        if epochs is not None:
            kwargs["epochs"] = epochs
        written = train_all(
            sigmas=tuple(sigma) if sigma else (0.25, 0.5, 1.0),
            out_dir=out_dir,
            log=lambda line: typer.echo(line, err=True),
            **kwargs,
        )
        for level, path in sorted(written.items()):
            typer.echo(f"sigma={level:g}: {path}")


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="smoothcert")
