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

from gliomaseg.evaluate.metrics.counts import (
    BINARY_REGIONS,
    EMPTY_POLICIES,
    METRIC_NAMES,
    SLICE_METRIC_NAMES,
    Counts,
    EmptyPolicy,
    confusion,
    dice,
    f1,
    iou,
    precision,
    recall,
    specificity,
)
from gliomaseg.evaluate.metrics.distance import (
    EDT_MAX_VOXELS,
    abs_volume_difference_ml,
    hd95,
    image_diagonal_mm,
    volume_ml,
)
from gliomaseg.evaluate.metrics.regions import (
    auroc,
    label_key,
    mask_metrics,
    region_metrics,
    slice_metrics,
)

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
