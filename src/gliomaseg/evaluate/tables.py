"""The files ``evaluate`` writes: ``per_case.csv``, ``per_slice.csv`` and ``summary.json``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.core.labels import REGIONS
from gliomaseg.evaluate.metrics import (
    BINARY_REGIONS,
    EMPTY_POLICIES,
    METRIC_NAMES,
    SLICE_METRIC_NAMES,
    label_key,
)
from gliomaseg.io.atomic import write_json_atomic, write_text_atomic
from gliomaseg.io.outdir import OutputFolder
from gliomaseg.io.outputs import EVALUATION_SUMMARY, PER_CASE_CSV, PER_SLICE_CSV

#: Columns of ``per_slice.csv`` after ``case_id``, ``region`` and ``slice``.
SLICE_COLUMNS: tuple[str, ...] = (
    "tp",
    "fp",
    "fn",
    *SLICE_METRIC_NAMES,
    "pred_area_mm2",
    "ref_area_mm2",
)


@dataclass
class EvaluationResult:
    """What :func:`evaluate_folders` computed and wrote.

    Attributes:
        out_dir: Output folder.
        per_case_csv: Path of ``per_case.csv``, or None when the ``case`` view was not asked.
        per_slice_csv: Path of ``per_slice.csv``, or None when the ``slice`` view was not asked.
        summary_json: Path of ``summary.json``.
        rows: One dict per evaluated case (the rows of ``per_case.csv``).
        summary: The content of ``summary.json``.
        missing_predictions: Ground-truth case ids with no prediction file.
        missing_references: Prediction case ids with no ground-truth case.
        errors: Case id -> one-line reason for cases that could not be evaluated.
    """

    out_dir: Path
    per_case_csv: Path | None
    per_slice_csv: Path | None
    summary_json: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    missing_predictions: list[str] = field(default_factory=list)
    missing_references: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def groups(binary: bool) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    """Regions (name -> internal codes) and single labels evaluated in a mode."""
    return (dict(BINARY_REGIONS), ()) if binary else (dict(REGIONS), (1, 2, 3))


def result_keys(mode: str) -> list[str]:
    """Result keys (regions, then single labels) of an evaluation mode."""
    regions, labels = groups(mode == "binary")
    return [*regions, *(label_key(c) for c in labels)]


def summary_statistics(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean, sample std (ddof 1), median, 25th/75th percentiles and count of finite values.

    NaN values are skipped; statistics of no value are None (std needs two values).
    """
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None, "median": None, "p25": None, "p75": None, "n": 0}
    p25, median, p75 = (float(x) for x in np.percentile(arr, [25, 50, 75]))
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "median": median,
        "p25": p25,
        "p75": p75,
        "n": int(arr.size),
    }


def _columns(mode: str) -> list[str]:
    return [f"{k}_{m}" for k in result_keys(mode) for m in METRIC_NAMES]


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return "" if value is None else str(value)


def _summary(rows: list[dict[str, Any]], *, mode: str, empty: str) -> dict[str, Any]:
    """The statistics part of ``summary.json`` (the caller adds the lists, in key order)."""
    regions = result_keys(mode)
    return {
        "n_cases": len(rows),
        "mode": mode,
        "regions": regions,
        "empty_policy": {"name": empty, "rule": EMPTY_POLICIES[empty]},
        "statistics": {"std_ddof": 1, "nan": "skipped; n counts the values used"},
        "metrics": {
            region: {m: summary_statistics(r[f"{region}_{m}"] for r in rows) for m in METRIC_NAMES}
            for region in regions
        },
        "cases": [r["case_id"] for r in rows],
    }


def write_outputs(
    out_dir: Path,
    *,
    rows: list[dict[str, Any]],
    slice_rows: list[dict[str, Any]],
    views: Sequence[str],
    mode: str,
    empty: str,
    missing_pred: list[str],
    missing_ref: list[str],
    errors: dict[str, str],
    trained: list[str] | None = None,
) -> EvaluationResult:
    """Write ``per_case.csv`` / ``per_slice.csv`` (the asked ``views``) and ``summary.json``
    atomically into ``out_dir``, never over a file gliomaseg did not write."""
    columns = _columns(mode)
    # Written afresh on every run, but never over a file gliomaseg did not write.
    OutputFolder(out_dir, overwrite=True).claim(
        *(out_dir / name for name in (PER_CASE_CSV, PER_SLICE_CSV, EVALUATION_SUMMARY))
    )
    per_case = per_slice = None
    if "case" in views:
        per_case = out_dir / PER_CASE_CSV
        write_text_atomic(per_case, _csv_text(rows, ["case_id", *columns]))
    if "slice" in views:
        per_slice = out_dir / PER_SLICE_CSV
        write_text_atomic(
            per_slice, _csv_text(slice_rows, ["case_id", "region", "slice", *SLICE_COLUMNS])
        )
    summary = _summary(rows, mode=mode, empty=empty)
    summary["missing_predictions"] = missing_pred
    summary["missing_references"] = missing_ref
    summary["used_to_train_model"] = list(trained or [])
    summary["errors"] = [{"case_id": k, "error": v} for k, v in errors.items()]
    summary["files"] = {
        "per_case": per_case and per_case.name,
        "per_slice": per_slice and per_slice.name,
    }
    summary_json = out_dir / EVALUATION_SUMMARY
    write_json_atomic(summary_json, summary)
    return EvaluationResult(
        out_dir=out_dir,
        per_case_csv=per_case,
        per_slice_csv=per_slice,
        summary_json=summary_json,
        rows=rows,
        summary=summary,
        missing_predictions=missing_pred,
        missing_references=missing_ref,
        errors=errors,
    )
