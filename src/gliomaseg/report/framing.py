"""What the image panels of a case report show: which slices, the display window, the crop."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.geometry import bounding_box
from gliomaseg.report.case_data import CaseVolumes

#: How many slices the image panels show at most.
MAX_SLICES = 4


def choose_slices(
    summary: dict[str, Any], prediction: NDArray[np.integer] | None, *, n: int = MAX_SLICES
) -> list[int]:
    """Axial indices to show: flagged slices, else the most probable, else the largest tumour.

    Ranked review flags (a summary with ``review``) give their ``n`` highest-ranked slices.
    Older summaries flag every probable slice: more than ``n`` are thinned to ``n`` spread
    evenly over their range (the centres of ``n`` equal groups), so the panels follow the
    tumour from bottom to top. Returns an empty list when nothing points at a slice.
    """
    slices = summary.get("slices") or []
    by_name = {str(s["slice"]): int(s["index"]) for s in slices}
    named = [by_name[str(f)] for f in summary.get("flagged_slices") or [] if str(f) in by_name]
    if named and "review" in summary:  # ranked, most uncertain first
        return sorted(dict.fromkeys(named[:n]))
    flagged = sorted(set(named))
    if flagged:
        if len(flagged) <= n:
            return flagged
        picks = [flagged[int((2 * k + 1) * len(flagged) / (2 * n))] for k in range(n)]
        return sorted(set(picks))
    ranked = sorted(
        (s for s in slices if float(s["max_tumour_probability"]) > 0),
        key=lambda s: -float(s["max_tumour_probability"]),
    )
    if ranked:
        return sorted(int(s["index"]) for s in ranked[:n])
    if prediction is not None and prediction.any():
        area = prediction.astype(bool).sum(axis=(0, 1))
        return sorted(int(z) for z in np.argsort(-area, kind="stable")[:n] if area[z] > 0)
    return []


def display_window(data: NDArray[np.floating]) -> tuple[float, float]:
    """(low, high) display window: 1st and 99th percentiles of the non-zero finite voxels."""
    values = data[np.isfinite(data) & (data != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    if not math.isfinite(hi - lo) or hi <= lo:
        return lo - 0.5, lo + 0.5
    return lo, hi


def crop_in_plane(volumes: CaseVolumes, *, margin: int = 4) -> CaseVolumes:
    """A copy cropped in X and Y to the brain (non-zero image voxels, any slice) plus masks.

    Real scans put the brain in a fraction of the field of view (BraTS: about 140 of 240
    voxels); cropping every panel to the same box makes the tumour readable. Z is kept, so
    slice indices do not change. Nothing to crop to: the volumes are returned unchanged.
    """
    arrays = [v != 0 for v in volumes.images.values()]
    arrays += [m > 0 for m in (volumes.prediction, volumes.reference) if m is not None]
    if volumes.probs is not None:
        arrays.append(volumes.probs.max(axis=0) > 0)
    if not arrays:
        return volumes
    plane = np.any([a.any(axis=2) for a in arrays], axis=0)
    box = bounding_box(plane, margin=margin)
    if box is None:
        return volumes

    def cut(a: Any) -> Any:
        return None if a is None else np.ascontiguousarray(a[..., box[0], box[1], :])

    return replace(
        volumes,
        images={k: cut(v) for k, v in volumes.images.items()},
        prediction=cut(volumes.prediction),
        reference=cut(volumes.reference),
        probs=cut(volumes.probs),
    )
