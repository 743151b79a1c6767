"""Segmentation metrics: pure numpy on boolean masks, in two steps (counts, then formulas).

:func:`confusion` counts true/false positives/negatives once; :func:`dice`, :func:`iou`,
:func:`precision`, :func:`recall`, :func:`specificity` and :func:`f1` are formulas on those
counts. :func:`hd95` measures boundary error in mm from the voxel spacing, and
:func:`region_metrics` applies everything to the BraTS regions and to each internal label.

Empty masks are where metric definitions disagree, so the policy is a named argument
(``empty``) everywhere:

``"brats"`` (default, the BraTS challenge convention)
    A ratio whose denominator is zero is 1 when both masks involved are empty and 0
    otherwise: both empty -> Dice = IoU = precision = recall = F1 = 1; prediction empty but
    reference not -> 0 (and the reverse). HD95 is 0 when both are empty and the image
    diagonal in mm (:func:`image_diagonal_mm`; 373.13 mm on the 240 x 240 x 155 BraTS grid at
    1 mm, the value BraTS uses) when exactly one is.
``"nan"``
    Undefined values are NaN (scikit-learn's ``zero_division=np.nan``; MONAI's ``DiceMetric``
    with ``ignore_empty=True`` gives NaN when the reference is empty): a 0/0 ratio is NaN and
    HD95 is NaN whenever either mask is empty (MONAI itself returns NaN for both empty and inf
    for one empty). Means over cases then skip these cases; count them separately.

Ratios with a non-zero denominator are the same under both policies (a prediction on an
empty reference has Dice 0 either way).

HD95 follows MONAI's ``compute_hausdorff_distance(percentile=95, spacing=...)`` exactly: the
surface of a mask is the set of its voxels removed by one binary erosion (face
connectivity, outside the image counts as background); the directed distances from each
surface voxel of one mask to the nearest surface voxel of the other are computed in mm with
the voxel spacing; HD95 is the *larger* of the two directed 95th percentiles (linear
interpolation), not the percentile of the pooled distances. Distances come from a Euclidean
distance transform of the masks cropped to their union bounding box, or from a KD-tree on the
surface voxels when that box is large (:data:`EDT_MAX_VOXELS`); both are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from gliomaseg.core.labels import REGIONS

EmptyPolicy = Literal["brats", "nan"]
EMPTY_POLICIES: dict[str, str] = {
    "brats": (
        "BraTS: a 0/0 ratio is 1 when both masks are empty, else 0; HD95 is 0 mm when both "
        "masks are empty and the image diagonal in mm when only one is"
    ),
    "nan": "undefined values (0/0 ratios, HD95 with an empty mask) are NaN and skipped by means",
}
#: Region for binary data (LGG FLAIR abnormality): tumour = any non-zero internal label.
BINARY_REGIONS: dict[str, tuple[int, ...]] = {"tumour": (1, 2, 3)}
#: Per-region metrics returned by :func:`region_metrics`, in column order.
METRIC_NAMES: tuple[str, ...] = (
    "dice",
    "iou",
    "precision",
    "recall",
    "specificity",
    "f1",
    "hd95_mm",
    "abs_volume_diff_ml",
    "pred_volume_ml",
    "ref_volume_ml",
)
#: Metrics computed per slice by :func:`slice_metrics` (counts-based only).
SLICE_METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "specificity", "f1")


@dataclass(frozen=True)
class Counts:
    """Voxel counts of a prediction against a reference.

    Attributes:
        tp: Voxels in both masks.
        fp: Voxels in the prediction only.
        fn: Voxels in the reference only.
        tn: Voxels in neither.
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        """Number of voxels compared."""
        return self.tp + self.fp + self.fn + self.tn


def _check_policy(empty: str) -> None:
    if empty not in EMPTY_POLICIES:
        raise ValueError(
            f"unknown empty-mask policy '{empty}'; choose one of {list(EMPTY_POLICIES)}"
        )


def _pair(pred: ArrayLike, ref: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    p = np.asarray(pred).astype(bool, copy=False)
    r = np.asarray(ref).astype(bool, copy=False)
    if p.shape != r.shape:
        raise ValueError(
            f"prediction shape {p.shape} differs from reference shape {r.shape}; both masks "
            "must be on the same voxel grid (resample the prediction onto the reference)"
        )
    return p, r


def confusion(pred: ArrayLike, ref: ArrayLike) -> Counts:
    """Count TP, FP, FN and TN of a prediction against a reference.

    Args:
        pred: Boolean mask of any shape (non-zero values count as True).
        ref: Boolean mask of the same shape.

    Returns:
        The four counts (they add up to ``pred.size``).

    Raises:
        ValueError: the shapes differ.
    """
    p, r = _pair(pred, ref)
    tp = int(np.count_nonzero(p & r))
    n_pred, n_ref = int(np.count_nonzero(p)), int(np.count_nonzero(r))
    return Counts(tp=tp, fp=n_pred - tp, fn=n_ref - tp, tn=p.size - n_pred - n_ref + tp)


def _ratio(
    num: NDArray[np.float64],
    den: NDArray[np.float64],
    both_empty: NDArray[np.bool_],
    empty: str,
) -> NDArray[np.float64]:
    """``num / den`` with the empty-mask policy where ``den == 0`` (vectorised)."""
    _check_policy(empty)
    fill = np.where(both_empty, 1.0, 0.0) if empty == "brats" else np.full(den.shape, np.nan)
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, fill)


def _formulas(
    tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, tn: ArrayLike, *, empty: str
) -> dict[str, NDArray[np.float64]]:
    """Every count-based metric, elementwise over arrays of counts."""
    tp_, fp_, fn_, tn_ = (np.asarray(c, dtype=np.float64) for c in (tp, fp, fn, tn))
    neither = (tp_ == 0) & (fp_ == 0) & (fn_ == 0)  # both masks empty
    dice_ = _ratio(2 * tp_, 2 * tp_ + fp_ + fn_, neither, empty)
    return {
        "dice": dice_,
        "iou": _ratio(tp_, tp_ + fp_ + fn_, neither, empty),
        # den 0: the prediction is empty; "both empty" then means the reference is too.
        "precision": _ratio(tp_, tp_ + fp_, fn_ == 0, empty),
        "recall": _ratio(tp_, tp_ + fn_, fp_ == 0, empty),
        # den 0: the reference covers everything; "both empty" applies to the negatives.
        "specificity": _ratio(tn_, tn_ + fp_, fn_ == 0, empty),
        # 2PR / (P + R) simplifies to the Dice formula; same empty cases.
        "f1": dice_,
    }


def _scalar(counts: Counts, name: str, empty: str) -> float:
    return float(_formulas(counts.tp, counts.fp, counts.fn, counts.tn, empty=empty)[name])


def dice(counts: Counts, *, empty: EmptyPolicy = "brats") -> float:
    """Dice coefficient 2TP / (2TP + FP + FN); see the module docstring for ``empty``."""
    return _scalar(counts, "dice", empty)


def iou(counts: Counts, *, empty: EmptyPolicy = "brats") -> float:
    """Intersection over union (Jaccard index) TP / (TP + FP + FN)."""
    return _scalar(counts, "iou", empty)


def precision(counts: Counts, *, empty: EmptyPolicy = "brats") -> float:
    """Precision (positive predictive value) TP / (TP + FP).

    Empty prediction: 1 under ``"brats"`` when the reference is empty too, else 0.
    """
    return _scalar(counts, "precision", empty)


def recall(counts: Counts, *, empty: EmptyPolicy = "brats") -> float:
    """Recall (sensitivity) TP / (TP + FN).

    Empty reference: 1 under ``"brats"`` when the prediction is empty too, else 0.
    """
    return _scalar(counts, "recall", empty)


def specificity(counts: Counts, *, empty: EmptyPolicy = "brats") -> float:
    """Specificity TN / (TN + FP).

    Reference covering every voxel: 1 under ``"brats"`` when the prediction does too, else 0.
    """
    return _scalar(counts, "specificity", empty)


def f1(counts: Counts, *, empty: EmptyPolicy = "brats") -> float:
    """F1 score 2PR / (P + R); equal to Dice for binary masks, with the same empty cases."""
    return _scalar(counts, "f1", empty)


def _spacing(spacing: Sequence[float] | ArrayLike, ndim: int) -> NDArray[np.float64]:
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(
            f"spacing {tuple(float(s) for s in sp)} does not fit a {ndim}D mask; give one "
            "positive voxel size in mm per axis"
        )
    return sp


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float] | ArrayLike) -> float:
    """Diagonal of the image extent in mm: sqrt(sum((shape * spacing)^2)).

    Used as the HD95 of a case where exactly one mask is empty under the ``"brats"`` policy
    (373.13 mm for 240 x 240 x 155 voxels at 1 mm).
    """
    sp = _spacing(spacing, len(shape))
    return float(np.sqrt(np.sum((np.asarray(shape, dtype=np.float64) * sp) ** 2)))


def _union_box(mask: NDArray[np.bool_], *, margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` grown by ``margin`` voxels (clipped), or None when empty."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(hits[0]) - margin, 0), int(hits[-1]) + 1 + margin))
    return tuple(box)


def _surface(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    # Outside the array counts as background (border_value=0), as in MONAI's get_mask_edges.
    return mask & ~ndimage.binary_erosion(mask)


#: Above this many voxels in the cropped box, surface distances come from a KD-tree on the
#: surface voxels instead of a distance transform of the box: the transform costs time in
#: proportion to the box, which one stray false positive far from the tumour inflates to the
#: whole image (~2.5 s per direction on 240 x 240 x 155), while the KD-tree costs time in
#: proportion to the surfaces. Both give exact Euclidean distances.
EDT_MAX_VOXELS = 1_000_000


def _directed_p95_edt(
    from_surface: NDArray[np.bool_], to_surface: NDArray[np.bool_], sp: NDArray[np.float64]
) -> float:
    # Every `to` surface voxel lies inside the cropped box, so the EDT there is exact.
    dist = ndimage.distance_transform_edt(~to_surface, sampling=sp)
    return float(np.percentile(dist[from_surface], 95))


def _directed_p95_kdtree(
    from_surface: NDArray[np.bool_], to_surface: NDArray[np.bool_], sp: NDArray[np.float64]
) -> float:
    from scipy.spatial import cKDTree

    tree = cKDTree(np.argwhere(to_surface) * sp, leafsize=32)
    dist, _ = tree.query(np.argwhere(from_surface) * sp, k=1)
    return float(np.percentile(dist, 95))


def _hd95_masks(
    p: NDArray[np.bool_],
    r: NDArray[np.bool_],
    sp: NDArray[np.float64],
    *,
    empty: str,
    diagonal: float,
) -> float:
    has_p, has_r = bool(p.any()), bool(r.any())
    if not (has_p and has_r):
        if empty == "nan":
            return math.nan
        return 0.0 if not (has_p or has_r) else diagonal
    box = _union_box(p | r, margin=1)
    assert box is not None  # both masks are non-empty here
    sp_, sr_ = _surface(p[box]), _surface(r[box])
    directed = _directed_p95_kdtree if sp_.size > EDT_MAX_VOXELS else _directed_p95_edt
    return max(directed(sp_, sr_, sp), directed(sr_, sp_, sp))


def hd95(
    pred: ArrayLike,
    ref: ArrayLike,
    *,
    spacing: Sequence[float] | ArrayLike,
    empty: EmptyPolicy = "brats",
) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (MONAI's definition).

    Args:
        pred: Boolean mask, 2D or 3D (any ndim works).
        ref: Boolean mask of the same shape.
        spacing: Voxel size in mm per axis (one number means isotropic).
        empty: ``"brats"``: 0 when both masks are empty, :func:`image_diagonal_mm` when
            exactly one is; ``"nan"``: NaN when either is empty.

    Returns:
        max(P95 of pred->ref surface distances, P95 of ref->pred surface distances), in mm.

    Raises:
        ValueError: shapes differ, spacing does not fit, or unknown policy.
    """
    _check_policy(empty)
    p, r = _pair(pred, ref)
    sp = _spacing(spacing, p.ndim)
    return _hd95_masks(p, r, sp, empty=empty, diagonal=image_diagonal_mm(p.shape, sp))


def volume_ml(mask: ArrayLike, spacing: Sequence[float] | ArrayLike) -> float:
    """Volume of a mask in mL: voxel count x voxel volume (mm^3) / 1000. Empty mask: 0."""
    m = np.asarray(mask).astype(bool, copy=False)
    return float(np.count_nonzero(m) * np.prod(_spacing(spacing, m.ndim)) / 1000.0)


def abs_volume_difference_ml(
    pred: ArrayLike, ref: ArrayLike, *, spacing: Sequence[float] | ArrayLike
) -> float:
    """|volume(pred) - volume(ref)| in mL (0 when both are empty)."""
    p, r = _pair(pred, ref)
    return abs(volume_ml(p, spacing) - volume_ml(r, spacing))


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
    _check_policy(empty)
    p, r = _pair(pred, ref)
    sp = _spacing(spacing, p.ndim)
    diagonal = image_diagonal_mm(p.shape, sp)
    box = _union_box(p | r, margin=1) or tuple(slice(None) for _ in p.shape)
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
    out = {k: float(v) for k, v in _formulas(c.tp, c.fp, c.fn, tn, empty=empty).items()}
    voxel_ml = float(np.prod(sp)) / 1000.0
    out["hd95_mm"] = _hd95_masks(p, r, sp, empty=empty, diagonal=diagonal)
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
    _check_policy(empty)
    pl, rl = np.asarray(pred_labels), np.asarray(ref_labels)
    if pl.shape != rl.shape:
        raise ValueError(
            f"prediction shape {pl.shape} differs from reference shape {rl.shape}; both label "
            "maps must be on the same voxel grid"
        )
    sp = _spacing(spacing, pl.ndim)
    diagonal = image_diagonal_mm(pl.shape, sp)
    box = _union_box((pl != 0) | (rl != 0), margin=1) or tuple(slice(None) for _ in pl.shape)
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
    p, r = _pair(pred, ref)
    ax = axis % p.ndim
    other = tuple(a for a in range(p.ndim) if a != ax)
    per_slice = int(np.prod([p.shape[a] for a in other]))
    tp = np.count_nonzero(p & r, axis=other)
    n_pred, n_ref = np.count_nonzero(p, axis=other), np.count_nonzero(r, axis=other)
    counts = {"tp": tp, "fp": n_pred - tp, "fn": n_ref - tp, "tn": per_slice - n_pred - n_ref + tp}
    out: dict[str, NDArray[np.float64]] = {k: v.astype(np.float64) for k, v in counts.items()}
    out.update(_formulas(counts["tp"], counts["fp"], counts["fn"], counts["tn"], empty=empty))
    if spacing is not None:
        sp = _spacing(spacing, p.ndim)
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
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positive, dtype=bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"auroc: {s.size} scores but {pos.size} labels; pass one label per score")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


__all__ = [
    "BINARY_REGIONS",
    "EDT_MAX_VOXELS",
    "EMPTY_POLICIES",
    "METRIC_NAMES",
    "SLICE_METRIC_NAMES",
    "Counts",
    "EmptyPolicy",
    "abs_volume_difference_ml",
    "auroc",
    "confusion",
    "dice",
    "f1",
    "hd95",
    "image_diagonal_mm",
    "iou",
    "label_key",
    "mask_metrics",
    "precision",
    "recall",
    "region_metrics",
    "slice_metrics",
    "specificity",
    "volume_ml",
]
