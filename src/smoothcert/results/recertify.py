"""Re-certify saved results from their evidence: no model, no sampling (log-then-certify).

Every record keeps its evidence (class counts per stage) and typed parameters, so its
certificate can be recomputed with the method's pure decision under other settings:
another alpha (the counts were drawn without reference to alpha, so any alpha is
valid for them) or the top-two certificate instead of the standard one (both use the
same selection and estimation counts). Re-certifying with the original settings
reproduces the original records exactly.

What cannot change without new samples: the noise (sigma, beta, alphabet), the sample
sizes and the threat; a method whose stages differ. Changing alpha after looking at
the certified results and keeping the best is the user's own multiple-testing problem:
each re-certified file is valid at its own alpha.

Example:
    >>> import json, pathlib, tempfile
    >>> from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> from smoothcert.results import ResultStore, record_line
    >>> from smoothcert.runner.config import RunConfig
    >>> params = GaussianParams(sigma=0.5, n0=10, n=1000, alpha=0.001)
    >>> cfg = RunConfig(params={"sigma": 0.5, "n0": 10, "n": 1000, "alpha": 0.001})
    >>> ev = Evidence((StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
    ...                StageEvidence("estimation", n=1000, alpha=0.0, counts=(20, 980))),
    ...               GaussianFacts(num_classes=2), seed=0)
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> with ResultStore.open(src, config=cfg.to_dict(), config_hash=cfg.config_hash()) as s:
    ...     s.append(record_line(decide_cohen(ev, params), index=0, label=1))
    >>> out = recertify(src, src.with_name("top2.jsonl"), method="cohen-top2", alpha=0.01)
    >>> from smoothcert.results import read_results
    >>> rec = read_results(out).records[0]
    >>> rec["method"], rec["alpha"], rec["p_upper"] is not None
    ('cohen-top2', 0.01, True)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.methods.registry import get_method
from smoothcert.results.records import record_line, result_of, upgrade_v1_record, validate_record
from smoothcert.results.store import ResultContents, ResultStore, read_results

BOUNDS: tuple[str, ...] = ("cp", "hoeffding", "bernstein", "betting")
"""Confidence bounds re-certification can use (``--bound``). ``betting`` (the
order-invariant mixture of constant bets, :mod:`smoothcert.decisions.combined`) takes the
combiners ``mono`` and ``top2``; on soft scores it needs the per-class score histograms
that a run with ``--score-bound betting`` keeps (hard votes and ``hardmax`` scores are
exact from their counts)."""

COMBINED_METHODS: dict[str, str] = {
    "cohen": "cohen-combined",
    "cohen-top2": "cohen-combined",
    "cohen-combined": "cohen-combined",
    "soft": "soft-combined",
    "soft-top2": "soft-combined",
    "soft-combined": "soft-combined",
}
"""The method a file's records are re-decided with when a bound or combiner is named."""


def _source_settings(method: str, params: dict[str, Any]) -> tuple[str, str]:
    """The (bound, combiner) a file of ``method`` with ``params`` certified with."""
    if method in ("cohen-combined", "soft-combined"):
        return str(params["bound"]), str(params["combiner"])
    bound = "cp" if method.startswith("cohen") else str(params.get("score_bound", "bernstein"))
    return bound, "top2" if method.endswith("top2") else "mono"


def _combined_params(
    source: str, params: dict[str, Any], *, bound: str, combiner: str
) -> dict[str, Any]:
    """The combined method's parameter dict from the source's (the sampling kept)."""
    keep = ["sigma", "n0", "n", "alpha"]
    if source.startswith("soft"):
        keep += ["score_map", "temperature"]
    out = {k: params[k] for k in keep if k in params}
    out.update(bound=bound, combiner=combiner)
    return out


def _check_names(bound: str | None, combiner: str | None, source: str) -> None:
    """Reject a bad bound or combiner name for files of ``source`` (before writing)."""
    from smoothcert.decisions.combined import (
        BETTING_COMBINERS,
        BETTING_NOTE,
        SOFT_COMBINED_BOUNDS,
    )
    from smoothcert.stats.combiners import COMBINERS

    if combiner is not None and combiner not in COMBINERS:
        raise InvalidParameterError(
            f"combiner = {combiner!r} is invalid; valid values: {', '.join(COMBINERS)}"
        )
    if bound is None:
        return
    if bound == "betting" and combiner is not None and combiner not in BETTING_COMBINERS:
        raise InvalidParameterError(
            f"combiner = {combiner!r} is invalid with bound = 'betting': {BETTING_NOTE}; "
            f"valid values: {', '.join(BETTING_COMBINERS)}"
        )
    if bound not in BOUNDS:
        raise InvalidParameterError(
            f"bound = {bound!r} is invalid; valid values: {', '.join(BOUNDS)}"
        )
    if COMBINED_METHODS.get(source) == "soft-combined" and bound not in SOFT_COMBINED_BOUNDS:
        raise InvalidParameterError(
            f"bound = {bound!r} is invalid for a {source!r} file (mean scores, not Bernoulli "
            f"votes); valid values: {', '.join(SOFT_COMBINED_BOUNDS)}"
        )


def _check_tau(tau: float, method: str, params_type: type) -> float:
    """Validate ``tau`` for re-deciding files of ``method`` (fixed-n token/hybrid only)."""
    import dataclasses

    from smoothcert._validation import check_open_unit

    tau = check_open_unit(tau, name="tau")
    fields = {f.name for f in dataclasses.fields(params_type)}
    if "tau" not in fields or "max_samples" in fields:
        raise InvalidParameterError(
            f"tau = {tau!r} cannot re-certify {method!r} results; valid: files of the "
            "fixed-n methods with a threshold (tokens, hybrid)"
        )
    return tau


def _check_betting_evidence(
    records: list[dict[str, Any]], params: dict[str, Any], path: str | os.PathLike[str]
) -> None:
    """Before writing anything: soft records re-decided with betting must have histograms.

    Raises:
        InvalidParameterError: naming the first record whose estimation stage has none.
    """
    if params.get("score_map", "hardmax") == "hardmax":
        return  # votes, or hardmax scores: exact from the counts / sums
    for record in records:
        stages = record.get("evidence", {}).get("stages", [])
        est: dict[str, Any] = next((st for st in stages if st.get("role") == "estimation"), {})
        if est.get("score_histograms") is None:
            raise InvalidParameterError(
                f"bound = 'betting' cannot re-certify {path}: record {record.get('index')} "
                "has no per-class score histograms (score_histograms of its estimation "
                "stage); valid: a soft run certified with --score-bound betting, or "
                "--bound hoeffding / bernstein for this file"
            )


def _v2_config(header: dict[str, Any]) -> dict[str, Any]:
    """The run configuration of a header, as a version-2 :class:`RunConfig` dict."""
    config = dict(header.get("config", {}))
    if header.get("format_version") == 1:
        method = str(config.get("method"))
        method = {"cohen_top2": "cohen-top2"}.get(method, method)
        return {
            "method": method,
            "params": {k: config[k] for k in ("sigma", "n0", "n", "alpha")},
            "model": config.get("model", "digits_cnn"),
            "dataset": config.get("dataset", "digits"),
            "split": config.get("split", "test"),
            "batch_size": config.get("batch_size", 1000),
            "num_examples": config.get("num_examples"),
            "skip": config.get("skip", 1),
            "start": config.get("start", 0),
            "seed": config.get("seed", 0),
        }
    return config


def load_records(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a result file (version 1 or 2) and validate every record.

    Returns:
        ``(header, records)`` as :func:`validated_records` gives them.

    Raises:
        ResultStoreError: on an unreadable file or an invalid record (one line naming the
            file, line and field).
    """
    contents = read_results(path)
    return contents.header, validated_records(contents)


def validated_records(contents: ResultContents) -> list[dict[str, Any]]:
    """The records of a read file: version 1 upgraded to version 2, each validated.

    Each record goes through :func:`~smoothcert.results.records.validate_record`:
    re-decided from its evidence, of the header's method and parameters, ``correct``
    consistent with its label and prediction.

    Raises:
        ResultStoreError: on an invalid record (one line naming the file, the record and
            the field).
    """
    version = contents.header.get("format_version")
    expected = _expected(contents)
    out = []
    for number, record in zip(contents.record_lines, contents.records, strict=True):
        where = f"{contents.path}: line {number}"
        if version == 1:
            record = upgrade_v1_record(record, where=where)
        out.append(validate_record(record, where=where, expected=expected))
    return out


def _expected(contents: ResultContents) -> dict[str, Any] | None:
    """The method and typed parameters (as a dict) the header says every record has.

    None for a header without a run configuration (a file written by hand, not a run).
    """
    from smoothcert.runner.config import RunConfig

    config = contents.header.get("config")
    if not isinstance(config, dict) or "method" not in config:
        return None
    try:
        run = RunConfig.from_dict(_v2_config(contents.header))
    except (InvalidParameterError, TypeError, KeyError) as err:
        raise ResultStoreError(
            f"{contents.path}: line 1: the header's config is invalid ({err})"
        ) from None
    return {"method": run.method, "params": run.method_params().to_dict()}


def recertify(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    method: str | None = None,
    alpha: float | None = None,
    bound: str | None = None,
    combiner: str | None = None,
    tau: float | None = None,
) -> Path:
    """Recompute every record's certificate from its evidence and write a new result file.

    Args:
        path: a result file (format version 1 or 2).
        output: the new result file (resumed if it holds the same configuration).
        method: the method to decide with (default: each record's own); must take the
            same parameters and stages (``cohen`` <-> ``cohen-top2``, ``soft`` <->
            ``soft-top2``), or be the combined method of the file (below).
        alpha: the new failure probability of the whole certificate (default: the
            original).
        bound: re-decide with this confidence bound, one of :data:`BOUNDS` (``cp`` only
            for hard votes). With ``bound`` or ``combiner`` the records are re-decided by
            ``cohen-combined`` (files of ``cohen``, ``cohen-top2``, ``cohen-combined``) or
            ``soft-combined`` (files of ``soft``, ``soft-top2``, ``soft-combined``), and
            the one not named keeps the file's own setting (``cohen``: ``cp``/``mono``;
            ``cohen-top2``: ``cp``/``top2``; ``soft``: its ``score_bound``/``mono``).
            The class and CPM's buckets come from the selection stage only.
        combiner: re-decide with this multi-class combiner, one of
            :data:`~smoothcert.stats.combiners.COMBINERS`.
        tau: re-decide a fixed-n ``tokens`` / ``hybrid`` file at this threshold, in
            (0, 1) (``>= 1/2`` in majority mode): the counts were drawn without reference
            to tau, so the certificate at any tau is valid for them (choose tau on another
            split: :mod:`smoothcert.results.calibration`).

    Returns:
        The output path.

    Raises:
        InvalidParameterError: on a bad alpha, bound, method or tau (outside (0, 1), or
            for a file without a threshold or of a sequential method), or a method that
            cannot decide the saved evidence.
        ResultStoreError: on an unreadable input file or an invalid record, or an output
            file holding another configuration.
    """
    from smoothcert.runner.config import HASHED_FIELDS, RunConfig

    _check_names(bound, combiner, "")
    if tau is not None:  # the range first, before any file is read
        from smoothcert._validation import check_open_unit

        tau = check_open_unit(tau, name="tau")
    if Path(output).resolve() == Path(path).resolve():
        raise InvalidParameterError(
            f"output = {str(output)!r} is the input file; valid: another file"
        )
    header, records = load_records(path)
    config_dict = _v2_config(header)
    old_spec = get_method(config_dict["method"])
    params_dict = dict(config_dict["params"])
    if (
        bound is not None
        or combiner is not None
        or (method is not None and method == COMBINED_METHODS.get(old_spec.name))
    ):
        target = COMBINED_METHODS.get(old_spec.name)
        if target is None:
            raise InvalidParameterError(
                f"bound/combiner cannot re-certify {old_spec.name!r} results; valid: files of "
                f"{', '.join(sorted(COMBINED_METHODS))}"
            )
        _check_names(bound, combiner, old_spec.name)
        if method is not None and method != target:
            raise InvalidParameterError(
                f"method = {method!r} with bound/combiner is invalid for {old_spec.name!r} "
                f"results; valid: {target!r} (or no method)"
            )
        own_bound, own_combiner = _source_settings(old_spec.name, params_dict)
        bound = own_bound if bound is None else bound
        combiner = own_combiner if combiner is None else combiner
        params_dict = _combined_params(old_spec.name, params_dict, bound=bound, combiner=combiner)
        method = target
        if bound == "betting":
            _check_betting_evidence(records, params_dict, path)
    spec = get_method(method) if method is not None else old_spec
    if spec.params_type is not old_spec.params_type and bound is None:
        raise InvalidParameterError(
            f"method = {spec.name!r} cannot re-certify {old_spec.name!r} results (other "
            f"parameters and stages); valid: a method with {old_spec.params_type.__name__}"
        )
    if alpha is not None:
        params_dict["alpha"] = alpha
    if tau is not None:
        params_dict["tau"] = _check_tau(tau, spec.name, spec.params_type)
    config = RunConfig.from_dict({**config_dict, "method": spec.name, "params": params_dict})
    new_params = config.method_params()
    extra: dict[str, Any] = {
        key: header[key]
        for key in ("device", "model_fingerprint", "model_weights_sha256")
        if key in header
    }
    extra["recertified_from"] = {
        "path": str(path),
        "config_hash": header.get("config_hash"),
        "format_version": header.get("format_version"),
        "method": old_spec.name,
    }
    if bound is not None:
        extra["recertified_from"].update(bound=bound, combiner=combiner)
    with ResultStore.open(
        output,
        config=config.to_dict(),
        config_hash=config.config_hash(),
        hashed_fields=HASHED_FIELDS,
        extra_header=extra,
    ) as store:
        for key in ("model_fingerprint", "model_weights_sha256"):
            if store.header.get(key) != extra.get(key):
                raise ResultStoreError(
                    f"{output} holds results of a model with {key} = {store.header.get(key)}, "
                    f"but {path} has {extra.get(key)}; refusing to mix results of different "
                    "models: choose another output file"
                )
        todo = [r for r in records if not store.is_done(r["index"])]
        if todo:
            store.record_selection({"recertified": str(path)})
        lines = []
        for record in todo:
            result = result_of(record, where=f"{path}: index {record['index']}")
            # The sampled parameters must be those of the file; only alpha may change.
            kept = {
                f.name: getattr(result.params, f.name) for f in dataclasses.fields(result.params)
            }
            if alpha is not None:
                kept["alpha"] = new_params.alpha  # type: ignore[attr-defined]
            if tau is not None:
                kept["tau"] = new_params.tau  # type: ignore[attr-defined]
            if bound is not None and combiner is not None:
                kept = _combined_params(result.method, kept, bound=bound, combiner=combiner)
            params = spec.params_type(**kept)
            if params != new_params:
                raise ResultStoreError(
                    f"{path}: record {record['index']} has parameters {result.params} that "
                    f"differ from the file's configuration; the file is inconsistent"
                )
            fresh = spec.decide(result.evidence, params)
            lines.append(record_line(fresh, index=record["index"], label=record["label"]))
        store.append_many(lines)
    return Path(output)
