"""Every metric of a pair of masks, of each region and label of two label maps, per slice;
and the AUROC of scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gliomaseg.core.geometry import bounding_box, check_spacing
from gliomaseg.core.labels import REGIONS
from gliomaseg.evaluate.metrics.counts import (
    METRIC_NAMES,
    EmptyPolicy,
    check_policy,
    confusion,
    formulas,
    pair,
)
from gliomaseg.evaluate.metrics.distance import hd95_masks, image_diagonal_mm


def mask_metrics(
    pred: ArrayLike,
    ref: ArrayLike,
    *,
    spacing: Sequence[float] | ArrayLike,
    empty: EmptyPolicy = "brats",
) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` for one pair of boolean masks.

    Args:
        pred: Boolean mask (X, Y[, Z]).
        ref: Boolean mask of the same shape.
        spacing: Voxel size in mm per axis.
        empty: Empty-mask policy (module docstring).

    Returns:
        Metric name -> value; volumes in mL, HD95 in mm.
    """
    check_policy(empty)
    p, r = pair(pred, ref)
    sp = check_spacing(spacing, p.ndim)
    diagonal = image_diagonal_mm(p.shape, sp)
    box = bounding_box(p | r, margin=1) or tuple(slice(None) for _ in p.shape)
    return _metrics_in_box(p[box], r[box], sp, empty=empty, diagonal=diagonal, total=p.size)


def _metrics_in_box(
    p: NDArray[np.bool_],
    r: NDArray[np.bool_],
    sp: NDArray[np.float64],
    *,
    empty: str,
    diagonal: float,
    total: int,
) -> dict[str, float]:
    """Metrics of masks cropped to a box holding every foreground voxel of both.

    Cropping changes no count but TN, which follows from ``total`` (voxels of the full grid).
    """
    c = confusion(p, r)
    tn = total - c.tp - c.fp - c.fn
    out = {k: float(v) for k, v in formulas(c.tp, c.fp, c.fn, tn, empty=empty).items()}
    voxel_ml = float(np.prod(sp)) / 1000.0
    out["hd95_mm"] = hd95_masks(p, r, sp, empty=empty, diagonal=diagonal)
    out["pred_volume_ml"] = (c.tp + c.fp) * voxel_ml
    out["ref_volume_ml"] = (c.tp + c.fn) * voxel_ml
    out["abs_volume_diff_ml"] = abs(out["pred_volume_ml"] - out["ref_volume_ml"])
    return {k: out[k] for k in METRIC_NAMES}


def label_key(code: int) -> str:
    """Result key of one internal label in :func:`region_metrics` (``label1``...)."""
    return f"label{code}"


def region_metrics(
    pred_labels: ArrayLike,
    ref_labels: ArrayLike,
    *,
    spacing: Sequence[float] | ArrayLike,
    regions: Mapping[str, Sequence[int]] = REGIONS,
    labels: Sequence[int] = (1, 2, 3),
    empty: EmptyPolicy = "brats",
) -> dict[str, dict[str, float]]:
    """Metrics of every region and every single label of two internal-code label maps.

    Args:
        pred_labels: (X, Y[, Z]) integer internal codes (0 background, 1 NCR/NET, 2 ED, 3 ET).
        ref_labels: Reference label map of the same shape.
        spacing: Voxel size in mm per axis.
        regions: Region name -> internal codes it unites; default BraTS WT/TC/ET. Use
            :data:`BINARY_REGIONS` (with ``labels=()``) for binary data such as LGG.
        labels: Internal codes evaluated one by one, keyed ``label<code>``.
        empty: Empty-mask policy (module docstring).

    Returns:
        ``{"WT": {"dice": ..., "hd95_mm": ...}, ..., "label1": {...}, ...}`` with the metrics of
        :data:`METRIC_NAMES`.

    Raises:
        ValueError: shapes differ, or spacing does not fit.
    """
    check_policy(empty)
    pl, rl = np.asarray(pred_labels), np.asarray(ref_labels)
    if pl.shape != rl.shape:
        raise ValueError(
            f"prediction shape {pl.shape} differs from reference shape {rl.shape}; both label "
            "maps must be on the same voxel grid"
        )
    sp = check_spacing(spacing, pl.ndim)
    diagonal = image_diagonal_mm(pl.shape, sp)
    box = bounding_box((pl != 0) | (rl != 0), margin=1) or tuple(slice(None) for _ in pl.shape)
    pc, rc = pl[box], rl[box]  # every count but TN lives inside the box
    groups = {**{k: tuple(v) for k, v in regions.items()}, **{label_key(c): (c,) for c in labels}}
    out: dict[str, dict[str, float]] = {}
    for key, codes in groups.items():
        p, r = np.isin(pc, codes), np.isin(rc, codes)
        out[key] = _metrics_in_box(p, r, sp, empty=empty, diagonal=diagonal, total=pl.size)
    return out


def slice_metrics(
    pred: ArrayLike,
    ref: ArrayLike,
    *,
    axis: int = -1,
    spacing: Sequence[float] | ArrayLike | None = None,
    empty: EmptyPolicy = "brats",
) -> dict[str, NDArray[np.float64]]:
    """Count-based metrics of every 2D slice along one axis (the axial axis by default).

    Args:
        pred: Boolean mask (X, Y, Z).
        ref: Boolean mask of the same shape.
        axis: Axis the slices are taken along (-1: Z, axial in canonical RAS order).
        spacing: Voxel size in mm per axis; when given, in-slice areas in mm^2 are added.
        empty: Empty-mask policy; under ``"brats"`` a slice where both masks are empty has
            Dice 1.

    Returns:
        Arrays of length ``pred.shape[axis]``: ``tp``, ``fp``, ``fn``, ``tn`` (voxel counts),
        the metrics of :data:`SLICE_METRIC_NAMES`, and with ``spacing`` ``pred_area_mm2``
        and ``ref_area_mm2``. Per-slice HD95 is not included (call :func:`hd95` on a slice).
    """
    p, r = pair(pred, ref)
    ax = axis % p.ndim
    other = tuple(a for a in range(p.ndim) if a != ax)
    per_slice = int(np.prod([p.shape[a] for a in other]))
    tp = np.count_nonzero(p & r, axis=other)
    n_pred, n_ref = np.count_nonzero(p, axis=other), np.count_nonzero(r, axis=other)
    counts = {"tp": tp, "fp": n_pred - tp, "fn": n_ref - tp, "tn": per_slice - n_pred - n_ref + tp}
    out: dict[str, NDArray[np.float64]] = {k: v.astype(np.float64) for k, v in counts.items()}
    out.update(formulas(counts["tp"], counts["fp"], counts["fn"], counts["tn"], empty=empty))
    if spacing is not None:
        sp = check_spacing(spacing, p.ndim)
        pixel_mm2 = float(np.prod([sp[a] for a in other]))
        out["pred_area_mm2"] = n_pred * pixel_mm2
        out["ref_area_mm2"] = n_ref * pixel_mm2
    return out


def auroc(scores: ArrayLike, positive: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for ``positive``: P(score_pos > score_neg).

    The Mann-Whitney form with midranks, so tied scores count one half.

    Args:
        scores: (N,) real scores, higher meaning "more likely positive".
        positive: (N,) booleans.

    Returns:
        AUROC in [0, 1]; NaN when either class is empty (undefined).
    """
    from scipy.stats import rankdata  # scipy.stats takes ~0.5 s to import: only when used

    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positive, dtype=bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"auroc: {s.size} scores but {pos.size} labels; pass one label per score")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
