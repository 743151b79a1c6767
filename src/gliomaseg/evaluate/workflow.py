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

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import voxel_spacing
from gliomaseg.core.errors import failure_message
from gliomaseg.core.geometry import from_canonical, source_index_affine, to_canonical
from gliomaseg.core.labels import LabelScheme, get_scheme
from gliomaseg.evaluate.metrics import EmptyPolicy, label_key, region_metrics, slice_metrics
from gliomaseg.evaluate.options import EMPTY_CHOICES, SCHEMES, VIEWS
from gliomaseg.evaluate.pairing import CasePair, Pairing, pair_cases
from gliomaseg.evaluate.tables import SLICE_COLUMNS, EvaluationResult, groups, write_outputs
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.labelmap import read_label_map, read_raw_label_map
from gliomaseg.io.layouts import read_case
from gliomaseg.io.outdir import check_location
from gliomaseg.io.outputs import SUMMARY_SUFFIX

logger = logging.getLogger(__name__)

#: Ground-truth layouts whose label is not a single NIfTI file: read through ``read_case``.
_CASE_READ_LAYOUTS = frozenset({"lgg-tiff", "kaggle-h5"})


# --------------------------------------------------------------------------- reading


def _read_reference(ref: CaseRef) -> tuple[NDArray[np.uint8], NDArray[np.float64], LabelScheme]:
    """Ground-truth internal codes on the label file's own grid, its affine and scheme."""
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
    found = read_label_map(path, scheme=ref.scheme)
    return found.codes, found.affine, found.scheme


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
    if binary:
        raw, affine = read_raw_label_map(path)
        label = (raw != 0).astype(np.uint8)
    else:
        found = read_label_map(path, scheme=pred_scheme, hint=hint.name)
        label, affine = found.codes, found.affine
    file_shape = tuple(label.shape)
    # Same physical grid stored in another axis order: flip/permute onto the reference's.
    canonical, pred_canonical_affine = to_canonical(label, affine)
    label = np.asarray(from_canonical(canonical, ref_affine), dtype=np.uint8)
    if tuple(label.shape) != tuple(ref_shape):
        raise ValueError(
            f"{path}: prediction shape {file_shape} does not match the ground truth "
            f"{tuple(ref_shape)}; write predictions on the ground truth's voxel grid "
            "(same shape as its label file)"
        )
    ref_canonical_affine = ref_affine @ source_index_affine(ref_affine, ref_shape)
    if not np.allclose(pred_canonical_affine, ref_canonical_affine, atol=1e-2):
        logger.warning(
            "%s: affine differs from the ground truth's (max %.3g mm); compared voxel by voxel",
            path,
            float(np.abs(pred_canonical_affine - ref_canonical_affine).max()),
        )
    return label


# --------------------------------------------------------------------------- evaluation


def _evaluate_pair(
    pair: CasePair,
    *,
    mode: str,
    pred_scheme: str | None,
    views: Sequence[str],
    empty: EmptyPolicy,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
    regions, labels = groups(binary)
    res = region_metrics(
        pred, ref_label, spacing=spacing, regions=regions, labels=labels, empty=empty
    )
    row: dict[str, Any] = {"case_id": pair.case_id}
    for key, metrics in res.items():
        row.update({f"{key}_{name}": value for name, value in metrics.items()})
    if "slice" not in views:
        return row, []
    return row, _slice_rows(pair.case_id, pred, ref_label, regions, labels, spacing, empty)


def _slice_rows(
    case_id: str,
    pred: NDArray[np.uint8],
    ref_label: NDArray[np.uint8],
    regions: dict[str, tuple[int, ...]],
    labels: tuple[int, ...],
    spacing: tuple[float, float, float],
    empty: EmptyPolicy,
) -> list[dict[str, Any]]:
    """Rows of ``per_slice.csv`` for one case: slices where either side is non-empty."""
    slices: list[dict[str, Any]] = []
    keyed = {**regions, **{label_key(c): (c,) for c in labels}}
    for key, codes in keyed.items():
        p, r = np.isin(pred, codes), np.isin(ref_label, codes)
        sm = slice_metrics(p, r, spacing=spacing, empty=empty)
        for k in np.flatnonzero((sm["pred_area_mm2"] > 0) | (sm["ref_area_mm2"] > 0)):
            row_k: dict[str, Any] = {"case_id": case_id, "region": key, "slice": int(k)}
            row_k.update({c: int(sm[c][k]) for c in ("tp", "fp", "fn")})
            row_k.update({c: float(sm[c][k]) for c in SLICE_COLUMNS[3:]})
            slices.append(row_k)
    return slices


def _mode_for(refs: Iterable[CaseRef], scheme: str) -> str:
    """``binary`` when asked, or when every ground-truth case's layout implies a binary scheme."""
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
    track: Callable[[Sequence[CasePair]], Iterable[CasePair]] | None = None,
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
        track: Wraps the list of case pairs while they are evaluated (the command line passes
            a progress bar); default: none.

    Returns:
        The :class:`EvaluationResult`. A case that cannot be read or compared is recorded in
        ``errors`` (and logged as one line); the others go on.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: bad options, no prediction matching any ground-truth case, or duplicate
            case ids; the message names the folder and the fix.
    """
    # Over 60 lines for its docstring (every option and output); the body is ~30 lines.
    _check_options(scheme=scheme, views=views, empty=empty, pred_scheme=pred_scheme)
    check_location(out_dir, data_paths=[pred_dir, gt_dir])
    pairing = pair_cases(pred_dir, gt_dir)
    pairs = pairing.pairs
    missing_pred, missing_ref = pairing.missing_predictions, pairing.missing_references
    errors = _check_pairing(pairing, pred_dir, gt_dir)
    mode = _mode_for((p.ref for p in pairs), scheme)
    options = {"mode": mode, "pred_scheme": pred_scheme, "views": views, "empty": empty}
    rows, slice_rows = _evaluate_all(track(pairs) if track else pairs, errors, **options)
    trained = _trained_on(Path(pred_dir), [r["case_id"] for r in rows])
    if trained:
        logger.warning(
            "%d case(s) were used to train the model (segment's summary says so): %s; their "
            "scores are not an independent measure",
            len(trained),
            preview(trained),
        )
    return write_outputs(
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


def _evaluate_all(
    pairs: Iterable[CasePair], errors: dict[str, str], **options: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of every case that could be evaluated; the others' reasons go into ``errors``."""
    rows: list[dict[str, Any]] = []
    slice_rows: list[dict[str, Any]] = []
    for pair in pairs:
        try:
            row, slices = _evaluate_pair(pair, **options)
        except Exception as err:  # the per-case boundary: one bad case never stops a batch
            logger.debug("%s failed", pair.case_id, exc_info=True)
            errors[pair.case_id] = failure_message(err)
            logger.error("%s: %s", pair.case_id, errors[pair.case_id])
            continue
        rows.append(row)
        slice_rows.extend(slices)
    return rows, slice_rows


def _check_pairing(pairing: Pairing, pred_dir: str | Path, gt_dir: str | Path) -> dict[str, str]:
    """Log what did not pair; the discovery errors (id -> reason). Raises when nothing paired."""
    missing_pred, missing_ref = pairing.missing_predictions, pairing.missing_references
    errors: dict[str, str] = {}
    for case_id, msg in pairing.errors.items():
        errors[case_id] = msg
        logger.error("%s: %s", case_id, msg)
    if not pairing.pairs:
        raise ValueError(
            f"{pred_dir}: no prediction matches a ground-truth case in {gt_dir} "
            f"(predictions: {preview(missing_ref)}; ground truth: {preview(missing_pred)}); "
            "name each prediction <case_id>_seg.nii.gz after its ground-truth case"
        )
    if missing_pred:
        logger.warning(
            "%d ground-truth case(s) have no prediction in %s: %s (listed in summary.json)",
            len(missing_pred),
            pred_dir,
            preview(missing_pred),
        )
    if missing_ref:
        logger.warning(
            "%d prediction(s) have no ground truth in %s: %s (listed in summary.json)",
            len(missing_ref),
            gt_dir,
            preview(missing_ref),
        )
    return errors


def _trained_on(pred_dir: Path, case_ids: Sequence[str]) -> list[str]:
    """Cases whose segment summary (``<id>_summary.json``) marks them as training cases."""
    out = []
    for cid in case_ids:
        try:
            record = json.loads((pred_dir / f"{cid}{SUMMARY_SUFFIX}").read_text())["training_case"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no summary, or one from before provenance was recorded
        if isinstance(record, dict) and record.get("used_to_train_model") is True:
            out.append(cid)
    return out


def _check_options(
    *, scheme: str, views: Sequence[str], empty: str, pred_scheme: str | None
) -> None:
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


def preview(ids: Sequence[str], n: int = 5) -> str:
    """The first ``n`` ids, comma-separated, with how many more (``"none"`` for no id)."""
    if not ids:
        return "none"
    more = f" and {len(ids) - n} more" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


__all__ = [
    "EMPTY_CHOICES",
    "SCHEMES",
    "VIEWS",
    "EvaluationResult",
    "evaluate_folders",
    "preview",
]
