"""Evaluate a folder of predicted label maps against ground truth in any supported layout.

Pairing is by case id. A prediction is a NIfTI file directly inside the prediction folder
named ``<case_id>_seg.nii.gz`` (what ``gliomaseg segment`` writes), ``<case_id>-seg.nii.gz``
or ``<case_id>.nii.gz`` for a ground-truth case id; other files there (``<case_id>_probs``)
are ignored. The ground truth is anything :func:`~gliomaseg.io.layouts.find_cases`
understands (BraTS case folders with a ``_seg`` file, MSD/nnU-Net datasets, LGG TIFF stacks,
a folder of label NIfTIs...).

Both label maps are compared on the ground-truth file's own voxel grid (the grid predictions
are written on), so slice indices in ``per_slice.csv`` are those of the files. A prediction
stored in another axis order is reoriented onto that grid by its affine (flips and axis
swaps only); a prediction of another shape is an error for that case.

Outputs, written atomically into the output folder:

``per_case.csv``
    One row per evaluated case: ``case_id`` then ``<region>_<metric>`` for every region (WT,
    TC, ET, or ``tumour`` in binary mode) and every internal label (``label1``..``label3``)
    and every metric of :data:`gliomaseg.evaluate.metrics.METRIC_NAMES`.
``per_slice.csv`` (view ``"slice"``)
    One row per case, region and slice along the last (axial) axis where the prediction or
    the reference is non-empty; slices empty in both are left out (their values are the
    empty-mask policy's constants).
``summary.json``
    Mean, sample standard deviation (ddof 1), median, 25th and 75th percentiles of every
    metric of every region over the cases (NaN values skipped, ``n`` says how many were
    used), the number of cases, the empty-mask policy, the cases missing on either side and
    the cases that could not be read, with the reason, and ``used_to_train_model``: the
    cases whose ``<case_id>_summary.json`` beside the prediction (``gliomaseg segment``) says
    the model was trained on them (their scores are not an independent measure).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, failure_message, one_line
from gliomaseg.io.outdir import OutputFolder, check_location

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from gliomaseg.core.labels import LabelScheme
    from gliomaseg.evaluate.metrics import EmptyPolicy
    from gliomaseg.io.caseref import CaseRef

logger = logging.getLogger(__name__)

#: Evaluation modes: ``auto`` uses WT/TC/ET and each label unless the ground truth's scheme is
#: binary (LGG); ``binary`` compares "tumour" = any non-zero label.
SCHEMES: tuple[str, ...] = ("auto", "binary")
VIEWS: tuple[str, ...] = ("case", "slice")
#: Kept in step with :data:`gliomaseg.evaluate.metrics.EMPTY_POLICIES` (not imported: ``--help`` stays
#: fast without scipy).
EMPTY_CHOICES: tuple[str, ...] = ("brats", "nan")
SEG_SUFFIXES: tuple[str, ...] = ("_seg", "-seg")
#: Columns of ``per_slice.csv`` after ``case_id``, ``region`` and ``slice``.
_SLICE_COLUMNS: tuple[str, ...] = (
    "tp",
    "fp",
    "fn",
    "dice",
    "iou",
    "precision",
    "recall",
    "specificity",
    "f1",
    "pred_area_mm2",
    "ref_area_mm2",
)
#: Ground-truth layouts whose label is not a single NIfTI file: read through ``read_case``.
_CASE_READ_LAYOUTS = frozenset({"lgg-tiff", "kaggle-h5"})
_PROGRESS_MIN_CASES = 4


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


@dataclass(frozen=True)
class CasePair:
    """One prediction file matched to its ground-truth case.

    Attributes:
        case_id: Case id (ground-truth id, without a ``_seg`` suffix).
        pred: Prediction NIfTI file.
        ref: The ground-truth case as found by :func:`~gliomaseg.io.layouts.find_cases`.
    """

    case_id: str
    pred: Path
    ref: CaseRef


def strip_seg_suffix(name: str) -> str:
    """Case id of a label file stem: ``BraTS2021_00000_seg`` -> ``BraTS2021_00000``."""
    for suffix in SEG_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------- pairing


def _prediction_files(pred_dir: Path) -> list[Path]:
    from gliomaseg.io import nifti

    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found; check --pred")
    files = sorted(
        p for p in pred_dir.iterdir() if p.is_file() and nifti.is_nifti(p) and p.name[0] != "."
    )
    if not files:
        raise ValueError(
            f"{pred_dir}: no NIfTI predictions; expected <case_id>_seg.nii.gz files directly "
            "in the folder (as 'gliomaseg segment' writes them)"
        )
    return files


def _discover(gt_dir: Path) -> tuple[list[CaseRef], dict[str, str]]:
    """Ground-truth cases, and the entries that could not be discovered (id -> reason)."""
    from gliomaseg.io.layouts import discover
    from gliomaseg.io.naming import stem

    refs, bad = discover(gt_dir)
    return refs, {strip_seg_suffix(stem(p)): msg for p, msg in bad}


def _reference_cases(gt_dir: Path) -> tuple[dict[str, CaseRef], dict[str, str]]:
    found, errors = _discover(gt_dir)
    refs: dict[str, CaseRef] = {}
    for ref in found:
        key = strip_seg_suffix(ref.case_id)
        if key in refs:
            raise ValueError(
                f"{ref.path}: ground-truth case id '{key}' also found at {refs[key].path}; "
                "keep one copy of each case under --gt"
            )
        refs[key] = ref
    return refs, errors


@dataclass
class Pairing:
    """Prediction files matched to ground-truth cases.

    Attributes:
        pairs: Matched cases, in case-id order.
        missing_predictions: Ground-truth case ids without a prediction file.
        missing_references: Prediction case ids without a ground-truth case.
        errors: Ground-truth entries that could not be discovered (id -> one-line reason).
    """

    pairs: list[CasePair]
    missing_predictions: list[str]
    missing_references: list[str]
    errors: dict[str, str]


def pair_cases(pred_dir: str | Path, gt_dir: str | Path) -> Pairing:
    """Match prediction files to ground-truth cases by case id.

    A prediction is a NIfTI directly in ``pred_dir`` named ``<id>_seg`` / ``<id>-seg`` or
    exactly ``<id>`` for a ground-truth case id; other files (``<id>_probs.nii.gz``...) are
    ignored. A ``_seg`` file whose id has no ground truth is a missing reference.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: no predictions or no ground truth found, or one case id twice.
    """
    from gliomaseg.io.naming import stem

    refs, errors = _reference_cases(Path(gt_dir))
    preds: dict[str, Path] = {}
    ignored = []
    for path in _prediction_files(Path(pred_dir)):
        name = stem(path)
        key = name if name in refs else strip_seg_suffix(name)
        if key == name and name not in refs:
            ignored.append(path.name)  # e.g. <case>_probs.nii.gz written beside the labels
            continue
        if key in preds:
            raise ValueError(
                f"{path}: prediction for case '{key}' also given by {preds[key].name}; "
                "keep one prediction file per case"
            )
        preds[key] = path
    if ignored:
        logger.debug("ignored %d file(s) that are not predictions: %s", len(ignored), ignored)
    return Pairing(
        pairs=[CasePair(k, preds[k], refs[k]) for k in sorted(refs) if k in preds],
        missing_predictions=sorted(k for k in refs if k not in preds),
        missing_references=sorted(k for k in preds if k not in refs and k not in errors),
        errors=errors,
    )


# --------------------------------------------------------------------------- reading


def _read_reference(ref: CaseRef) -> tuple[NDArray[np.uint8], NDArray[np.float64], LabelScheme]:
    """Ground-truth internal codes on the label file's own grid, its affine and scheme."""
    from gliomaseg.core.labels import get_scheme, guess_scheme
    from gliomaseg.io import nifti
    from gliomaseg.io.layouts import read_case

    path = ref.label or (ref.path if ref.layout == "nifti-file" else None)
    if ref.layout in _CASE_READ_LAYOUTS or path is None:
        case = read_case(ref)
        if case.label is None or case.scheme is None:
            raise ValueError(
                f"{ref.path}: ground-truth case '{ref.case_id}' has no label map; "
                "add its segmentation or point --gt at labelled data"
            )
        affine = case.source_affine if case.source_affine is not None else case.affine
        label = np.asarray(case.to_source(case.label), dtype=np.uint8)
        return label, affine, case.scheme
    raw, affine = nifti.read_label(path)
    raw = raw[..., None] if raw.ndim == 2 else raw
    if raw.ndim != 3:
        raise ValueError(f"{path}: {raw.ndim}D ground truth; expected a 2D or 3D label map")
    if ref.scheme:
        scheme = get_scheme(ref.scheme)
    else:
        try:
            scheme = guess_scheme(_values(raw))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return scheme.encode(raw, source=str(path)), affine, scheme


def _values(raw: NDArray[Any]) -> set[int]:
    if raw.dtype.kind == "f":
        raw = np.rint(raw)
    return {int(v) for v in np.unique(raw)}


def _read_prediction(
    path: Path,
    *,
    ref_affine: NDArray[np.float64],
    ref_shape: tuple[int, ...],
    hint: LabelScheme,
    pred_scheme: str | None,
    binary: bool,
) -> NDArray[np.uint8]:
    """A prediction as internal codes on the reference grid (binary: 0/1 tumour)."""
    from gliomaseg.core.geometry import from_canonical, to_canonical
    from gliomaseg.core.labels import get_scheme, guess_scheme
    from gliomaseg.io import nifti

    raw, affine = nifti.read_label(path)
    raw = raw[..., None] if raw.ndim == 2 else raw
    if raw.ndim != 3:
        raise ValueError(f"{path}: {raw.ndim}D prediction; expected a 2D or 3D label map")
    if binary:
        label = (np.asarray(raw) != 0).astype(np.uint8)
    elif pred_scheme:
        label = get_scheme(pred_scheme).encode(raw, source=str(path))
    else:
        try:
            scheme = guess_scheme(_values(raw), hint=hint.name)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        label = scheme.encode(raw, source=str(path))
    # Same physical grid stored in another axis order: flip/permute onto the reference's.
    canonical, pred_canonical_affine = to_canonical(label, affine)
    label = np.asarray(from_canonical(canonical, ref_affine), dtype=np.uint8)
    if tuple(label.shape) != tuple(ref_shape):
        raise ValueError(
            f"{path}: prediction shape {tuple(raw.shape)} does not match the ground truth "
            f"{tuple(ref_shape)}; write predictions on the ground truth's voxel grid "
            "(same shape as its label file)"
        )
    ref_canonical_affine = ref_affine @ _ornt_affine(ref_affine, ref_shape)
    if not np.allclose(pred_canonical_affine, ref_canonical_affine, atol=1e-2):
        logger.warning(
            "%s: affine differs from the ground truth's (max %.3g mm); compared voxel by voxel",
            path,
            float(np.abs(pred_canonical_affine - ref_canonical_affine).max()),
        )
    return label


def _ornt_affine(affine: NDArray[np.float64], shape: Sequence[int]) -> NDArray[np.float64]:
    """The matrix ``to_canonical`` composes with ``affine`` for a grid of ``shape``."""
    from gliomaseg.core.geometry import source_index_affine

    return source_index_affine(affine, shape)


# --------------------------------------------------------------------------- evaluation


def _groups(binary: bool) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    from gliomaseg.core.labels import REGIONS
    from gliomaseg.evaluate.metrics import BINARY_REGIONS

    return (dict(BINARY_REGIONS), ()) if binary else (dict(REGIONS), (1, 2, 3))


def _keys(mode: str) -> list[str]:
    """Result keys (regions, then single labels) of an evaluation mode."""
    from gliomaseg.evaluate.metrics import label_key

    regions, labels = _groups(mode == "binary")
    return [*regions, *(label_key(c) for c in labels)]


def _evaluate_pair(
    pair: CasePair,
    *,
    mode: str,
    pred_scheme: str | None,
    views: Sequence[str],
    empty: EmptyPolicy,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from gliomaseg.core.case import voxel_spacing
    from gliomaseg.evaluate.metrics import label_key, region_metrics, slice_metrics

    ref_label, ref_affine, scheme = _read_reference(pair.ref)
    binary = mode == "binary"
    if scheme.binary and not binary:
        raise ValueError(
            f"{pair.ref.path}: ground truth is binary (scheme '{scheme.name}') while other "
            "cases have BraTS labels; evaluate binary data separately with --scheme binary"
        )
    pred = _read_prediction(
        pair.pred,
        ref_affine=ref_affine,
        ref_shape=ref_label.shape,
        hint=scheme,
        pred_scheme=pred_scheme,
        binary=binary,
    )
    if binary:
        ref_label = (ref_label != 0).astype(np.uint8)
    spacing = voxel_spacing(ref_affine)
    regions, labels = _groups(binary)
    res = region_metrics(
        pred, ref_label, spacing=spacing, regions=regions, labels=labels, empty=empty
    )
    row: dict[str, Any] = {"case_id": pair.case_id}
    for key, metrics in res.items():
        row.update({f"{key}_{name}": value for name, value in metrics.items()})
    slices: list[dict[str, Any]] = []
    if "slice" in views:
        groups = {**regions, **{label_key(c): (c,) for c in labels}}
        for key, codes in groups.items():
            p, r = np.isin(pred, codes), np.isin(ref_label, codes)
            sm = slice_metrics(p, r, spacing=spacing, empty=empty)
            for k in np.flatnonzero((sm["pred_area_mm2"] > 0) | (sm["ref_area_mm2"] > 0)):
                row_k: dict[str, Any] = {"case_id": pair.case_id, "region": key, "slice": int(k)}
                row_k.update({c: int(sm[c][k]) for c in ("tp", "fp", "fn")})
                row_k.update({c: float(sm[c][k]) for c in _SLICE_COLUMNS[3:]})
                slices.append(row_k)
    return row, slices


def _mode_for(refs: Iterable[CaseRef], scheme: str) -> str:
    """``binary`` when asked, or when every ground-truth case's layout implies a binary scheme."""
    from gliomaseg.core.labels import get_scheme

    if scheme == "binary":
        return "binary"
    refs = list(refs)
    if refs and all(r.scheme and get_scheme(r.scheme).binary for r in refs):
        return "binary"
    return "regions"


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path,
    *,
    scheme: str = "auto",
    views: Sequence[str] = VIEWS,
    empty: EmptyPolicy = "brats",
    pred_scheme: str | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Compare every prediction with its ground truth and write the reports.

    Args:
        pred_dir: Folder of prediction NIfTIs (``<case_id>_seg.nii.gz``).
        gt_dir: Ground truth in any layout :func:`~gliomaseg.io.layouts.find_cases` reads.
        out_dir: Folder for ``per_case.csv``, ``per_slice.csv`` and ``summary.json``.
        scheme: ``"auto"``: BraTS regions WT/TC/ET and labels 1-3, or binary when the ground
            truth's layout has a binary scheme (LGG); ``"binary"``: one region ``tumour`` =
            any non-zero label on both sides (use it for a folder of binary label NIfTIs).
        views: ``"case"`` and/or ``"slice"`` (which CSV files to write).
        empty: Empty-mask policy of :mod:`gliomaseg.evaluate.metrics` (``"brats"`` or ``"nan"``).
        pred_scheme: Label scheme of the prediction files; default: the ground-truth case's
            scheme when it explains the values, else guessed from the values.
        progress: Show a rich progress bar on stderr when there are several cases.

    Returns:
        The :class:`EvaluationResult`. A case that cannot be read or compared is recorded in
        ``errors`` (and logged as one line); the others go on.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: bad options, no prediction matching any ground-truth case, or duplicate
            case ids; the message names the folder and the fix.
    """
    _check_options(scheme=scheme, views=views, empty=empty, pred_scheme=pred_scheme)
    check_location(out_dir, data_paths=[pred_dir, gt_dir])
    pairing = pair_cases(pred_dir, gt_dir)
    pairs = pairing.pairs
    missing_pred, missing_ref = pairing.missing_predictions, pairing.missing_references
    errors: dict[str, str] = {}
    for case_id, msg in pairing.errors.items():
        errors[case_id] = msg
        logger.error("%s: %s", case_id, msg)
    if not pairs:
        raise ValueError(
            f"{pred_dir}: no prediction matches a ground-truth case in {gt_dir} "
            f"(predictions: {_preview(missing_ref)}; ground truth: {_preview(missing_pred)}); "
            "name each prediction <case_id>_seg.nii.gz after its ground-truth case"
        )
    if missing_pred:
        logger.warning(
            "%d ground-truth case(s) have no prediction in %s: %s (listed in summary.json)",
            len(missing_pred),
            pred_dir,
            _preview(missing_pred),
        )
    if missing_ref:
        logger.warning(
            "%d prediction(s) have no ground truth in %s: %s (listed in summary.json)",
            len(missing_ref),
            gt_dir,
            _preview(missing_ref),
        )
    mode = _mode_for((p.ref for p in pairs), scheme)
    rows: list[dict[str, Any]] = []
    slice_rows: list[dict[str, Any]] = []
    for pair in _track(pairs, enabled=progress and len(pairs) >= _PROGRESS_MIN_CASES):
        try:
            row, slices = _evaluate_pair(
                pair, mode=mode, pred_scheme=pred_scheme, views=views, empty=empty
            )
        except Exception as err:  # the per-case boundary: one bad case never stops a batch
            logger.debug("%s failed", pair.case_id, exc_info=True)
            errors[pair.case_id] = failure_message(err)
            logger.error("%s: %s", pair.case_id, errors[pair.case_id])
            continue
        rows.append(row)
        slice_rows.extend(slices)
    trained = _trained_on(Path(pred_dir), [r["case_id"] for r in rows])
    if trained:
        logger.warning(
            "%d case(s) were used to train the model (segment's summary says so): %s; their "
            "scores are not an independent measure",
            len(trained),
            _preview(trained),
        )
    return _write_outputs(
        Path(out_dir),
        rows=rows,
        slice_rows=slice_rows,
        views=views,
        mode=mode,
        empty=empty,
        missing_pred=missing_pred,
        missing_ref=missing_ref,
        errors=errors,
        trained=trained,
    )


def _trained_on(pred_dir: Path, case_ids: Sequence[str]) -> list[str]:
    """Cases whose segment summary (``<id>_summary.json``) marks them as training cases."""
    import json

    out = []
    for cid in case_ids:
        try:
            record = json.loads((pred_dir / f"{cid}_summary.json").read_text())["training_case"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no summary, or one from before provenance was recorded
        if isinstance(record, dict) and record.get("used_to_train_model") is True:
            out.append(cid)
    return out


def _check_options(
    *, scheme: str, views: Sequence[str], empty: str, pred_scheme: str | None
) -> None:
    from gliomaseg.core.labels import get_scheme

    if scheme not in SCHEMES:
        raise ValueError(f"unknown evaluation scheme '{scheme}'; choose one of {list(SCHEMES)}")
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise ValueError(f"unknown view(s) {bad or '(none)'}; choose from {list(VIEWS)}")
    if empty not in EMPTY_CHOICES:
        raise ValueError(
            f"unknown empty-mask policy '{empty}'; choose one of {list(EMPTY_CHOICES)}"
        )
    if pred_scheme:
        get_scheme(pred_scheme)


def _preview(ids: Sequence[str], n: int = 5) -> str:
    if not ids:
        return "none"
    more = f" and {len(ids) - n} more" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def _track(pairs: list[CasePair], *, enabled: bool) -> Iterable[CasePair]:
    if not enabled:
        return pairs
    from rich.console import Console
    from rich.progress import track

    return track(pairs, description="evaluate", console=Console(stderr=True), transient=True)


# --------------------------------------------------------------------------- reports


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
    from gliomaseg.evaluate.metrics import METRIC_NAMES

    return [f"{k}_{m}" for k in _keys(mode) for m in METRIC_NAMES]


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


def _write_outputs(
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
    from gliomaseg.evaluate.metrics import EMPTY_POLICIES, METRIC_NAMES
    from gliomaseg.io.atomic import write_json_atomic, write_text_atomic

    columns = _columns(mode)
    regions = _keys(mode)
    # Written afresh on every run, but never over a file gliomaseg did not write.
    OutputFolder(out_dir, overwrite=True).claim(
        *(out_dir / name for name in ("per_case.csv", "per_slice.csv", "summary.json"))
    )
    per_case = per_slice = None
    if "case" in views:
        per_case = out_dir / "per_case.csv"
        write_text_atomic(per_case, _csv_text(rows, ["case_id", *columns]))
    if "slice" in views:
        per_slice = out_dir / "per_slice.csv"
        write_text_atomic(
            per_slice, _csv_text(slice_rows, ["case_id", "region", "slice", *_SLICE_COLUMNS])
        )
    summary = {
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
        "missing_predictions": missing_pred,
        "missing_references": missing_ref,
        "used_to_train_model": list(trained or []),
        "errors": [{"case_id": k, "error": v} for k, v in errors.items()],
        "files": {
            "per_case": per_case and per_case.name,
            "per_slice": per_slice and per_slice.name,
        },
    }
    summary_json = out_dir / "summary.json"
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


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg evaluate`` flags to a (sub)parser."""
    parser.add_argument(
        "--pred",
        type=Path,
        required=True,
        metavar="DIR",
        help="prediction NIfTIs (<case_id>_seg.nii.gz)",
    )
    parser.add_argument(
        "--gt", type=Path, required=True, metavar="DIR", help="ground truth in any supported layout"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT_DIR",
        help="folder for per_case.csv, per_slice.csv, summary.json",
    )
    parser.add_argument(
        "--scheme",
        choices=SCHEMES,
        default="auto",
        help="auto: WT/TC/ET and labels (binary for LGG); binary: tumour = any non-zero label",
    )
    parser.add_argument(
        "--pred-scheme",
        default=None,
        help="label scheme of the prediction files (default: the ground truth's, else guessed)",
    )
    parser.add_argument(
        "--views", default=",".join(VIEWS), help="comma list of case,slice (CSV files to write)"
    )
    parser.add_argument(
        "--empty",
        choices=EMPTY_CHOICES,
        default="brats",
        help="empty-mask policy (brats: both empty -> Dice 1, HD95 0)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``gliomaseg evaluate`` from parsed flags; 0 ok, 2 bad input or a case failed."""
    views = tuple(v.strip() for v in str(args.views).split(",") if v.strip())
    try:
        result = evaluate_folders(
            args.pred,
            args.gt,
            args.output,
            scheme=args.scheme,
            views=views,
            empty=args.empty,
            pred_scheme=args.pred_scheme,
            progress=True,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"gliomaseg: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_summary(result)
    if result.errors:
        print(
            f"gliomaseg: {len(result.errors)} case(s) could not be evaluated; "
            f"see {result.summary_json}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return EXIT_OK


def _print_summary(result: EvaluationResult) -> None:
    s = result.summary
    print(f"{s['n_cases']} case(s) evaluated -> {result.out_dir}")
    for key, metrics in s["metrics"].items():
        name = display_name(key)
        if name is None:
            continue
        d, h = metrics["dice"], metrics["hd95_mm"]
        dice_text = f"Dice {_fmt(d['mean'])} ± {_fmt(d['std'])}"
        print(f"  {name:>8}  {dice_text}   HD95 {_fmt(h['median'])} mm (median)")
    for key, label in (
        ("missing_predictions", "no prediction"),
        ("missing_references", "no ground truth"),
        ("used_to_train_model", "used to train the model (not an independent measure)"),
    ):
        if s[key]:
            print(f"  {label}: {_preview(s[key])}")


def display_name(key: str) -> str | None:
    """The name a person reads for a result key: ``label1`` -> ``NCR/NET``, ``WT`` -> ``WT``.

    None for a single label that is also a region (``label3`` is ET, already printed).
    """
    from gliomaseg.core.labels import INTERNAL_NAMES, REGIONS
    from gliomaseg.evaluate.metrics import label_key

    for code, name in INTERNAL_NAMES.items():
        if key == label_key(code):
            return None if (code,) in REGIONS.values() else name
    return key


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


__all__ = [
    "EMPTY_CHOICES",
    "SCHEMES",
    "VIEWS",
    "CasePair",
    "EvaluationResult",
    "Pairing",
    "add_arguments",
    "evaluate_folders",
    "pair_cases",
    "run",
    "strip_seg_suffix",
    "summary_statistics",
]
