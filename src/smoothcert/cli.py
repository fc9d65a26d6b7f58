"""The ``smoothcert`` command line (typer + rich).

Commands:

* ``smoothcert certify``: certify a dataset split with a bundled model (default: the
  ``digits_cnn`` model at sigma 0.25 on the digits test split), with a progress bar,
  resuming an interrupted run; prints the certified-accuracy table and writes a PNG.
* ``smoothcert report RESULTS...``: certified accuracy per radius, ACR and abstention
  rate, one column per file (Markdown, or LaTeX with ``--latex``), optional plot.
* ``smoothcert export RESULTS --format tsv``: the classic ``idx label predict radius
  correct time`` columns.
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


def _summary(paths: Sequence[Path], radii: str | None, labels: Sequence[str] | None) -> Any:
    from smoothcert.reports import load_many, parse_radii

    files = load_many(paths, labels=labels if labels else None)
    grid = parse_radii(radii) if radii is not None else None
    return files, grid


@app.command()
def certify(
    model: Annotated[str, typer.Option(help="Bundled model name.")] = "digits_cnn",
    dataset: Annotated[str, typer.Option(help="Bundled dataset name.")] = "digits",
    split: Annotated[str, typer.Option(help="Dataset split.")] = "test",
    sigma: Annotated[
        float, typer.Option(help="Noise std (input units); selects the model's weights.")
    ] = 0.25,
    n0: Annotated[int, typer.Option("--n0", help="Selection samples per example.")] = 100,
    n: Annotated[int, typer.Option("-n", "--n", help="Estimation samples per example.")] = 10_000,
    alpha: Annotated[float, typer.Option(help="Failure probability per example.")] = 0.001,
    batch_size: Annotated[int, typer.Option(help="Noisy samples per forward pass.")] = 1000,
    num_examples: Annotated[
        int | None, typer.Option(help="Examples to certify (default: all selected).")
    ] = None,
    skip: Annotated[int, typer.Option(help="Take every skip-th example.")] = 1,
    start: Annotated[int, typer.Option(help="Position of the first example.")] = 0,
    seed: Annotated[int, typer.Option(help="Run seed (per-example seeds derive from it).")] = 0,
    device: Annotated[str, typer.Option(help="Device: cpu, cuda, cuda:1, mps.")] = "cpu",
    output: Annotated[
        Path | None,
        typer.Option(help="Result file (default: results/<model>_sigma<sigma>[_<hash>].jsonl)."),
    ] = None,
    top2: Annotated[bool, typer.Option("--top2", help="Top-two certificate.")] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    plot: Annotated[
        bool, typer.Option("--plot/--no-plot", help="Write a PNG next to the results.")
    ] = True,
    radii: Annotated[
        str | None, typer.Option(help="Radii of the summary table, e.g. 0,0.25,0.5.")
    ] = None,
) -> None:
    """Certify a dataset split (Cohen et al. CERTIFY); re-run the same command to resume."""
    from smoothcert.certificates.gaussian import max_certifiable_radius
    from smoothcert.reports import load_results as load
    from smoothcert.reports import markdown_table, parse_radii, plot_certified_accuracy
    from smoothcert.runner.config import RunConfig, default_run_stem

    console = _stderr_console()
    with _user_errors():
        config = RunConfig(
            model=model,
            dataset=dataset,
            split=split,
            sigma=sigma,
            method="cohen_top2" if top2 else "cohen",
            n0=n0,
            n=n,
            alpha=alpha,
            batch_size=batch_size,
            num_examples=num_examples,
            skip=skip,
            start=start,
            seed=seed,
        )
        grid = parse_radii(radii) if radii is not None else None
        path = (
            output
            if output is not None
            else (_DEFAULT_RESULTS_DIR / f"{default_run_stem(config)}.jsonl")
        )
        best = max_certifiable_radius(n=n, alpha=alpha / 2 if top2 else alpha, sigma=sigma)
        if best == 0.0:
            console.print(
                f"warning: with n={n} and alpha={alpha:g} no example can be certified "
                "(every result will abstain); increase -n"
            )
        from smoothcert.runner.run import RunProgress, run_certification, validate_run

        validate_run(config, path, device=device)
        console.print(
            f"certifying {dataset}/{split} with {model} (sigma={sigma:g}, n0={n0}, n={n}, "
            f"alpha={alpha:g}, {config.method}) on {device} -> {path}"
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
            run_certification(config, path, device=device, progress=on_progress)
        except KeyboardInterrupt:
            console.print(
                f"interrupted after {state['done']} of {state['total']} examples; every "
                f"finished example is saved in {path}: re-run the same command to resume"
            )
            raise typer.Exit(130) from None
        finally:
            if state.get("bar"):
                bar.stop()

        result = load(path)
        typer.echo(markdown_table([result], grid))
        console.print(f"results: {path}")
        if plot and len(result):
            png = plot_certified_accuracy([result], path.with_suffix(".png"))
            console.print(f"plot: {png}")


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
) -> None:
    """Certified accuracy per radius, ACR and abstention rate, one column per file."""
    from smoothcert.reports import latex_table, markdown_table, plot_certified_accuracy

    with _user_errors():
        files, grid = _summary(results, radii, label)
        typer.echo(latex_table(files, grid) if latex else markdown_table(files, grid))
        for f in files:
            if f.torn_tail:
                typer.echo(f"note: ignored an incomplete last line of {f.path}", err=True)
        if plot is not None:
            written = plot_certified_accuracy(files, plot)
            typer.echo(f"plot: {written}", err=True)


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
) -> None:
    """Train a bundled model at the given noise levels and save its weights (sha256-listed)."""
    with _user_errors():
        from smoothcert.models.train import train_all

        kwargs: dict[str, Any] = {"name": model, "seed": seed, "device": device}
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
