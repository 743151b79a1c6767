"""Counts and the formulas on them, with the empty-mask policy (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

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


def check_policy(empty: str) -> None:
    """Raise ValueError naming the known policies when ``empty`` is not one of them."""
    if empty not in EMPTY_POLICIES:
        raise ValueError(
            f"unknown empty-mask policy '{empty}'; choose one of {list(EMPTY_POLICIES)}"
        )


def pair(pred: ArrayLike, ref: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Two masks as booleans; ValueError when their shapes differ."""
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
    p, r = pair(pred, ref)
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
    check_policy(empty)
    fill = np.where(both_empty, 1.0, 0.0) if empty == "brats" else np.full(den.shape, np.nan)
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, fill)


def formulas(
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
    return float(formulas(counts.tp, counts.fp, counts.fn, counts.tn, empty=empty)[name])


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
