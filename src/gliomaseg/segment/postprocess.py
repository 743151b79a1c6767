"""Postprocessing of internal-code label maps, and the per-case numbers ``segment`` reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gliomaseg.core.case import voxel_spacing
from gliomaseg.core.connectivity import connected_components
from gliomaseg.core.geometry import bounding_box, voxel_to_world
from gliomaseg.core.labels import ET, NCR, region_counts
from gliomaseg.core.laterality import tumour_side
from gliomaseg.segment.config import PostprocessConfig

#: Why volume thresholds are not applied to one slice (recorded in the summary).
SKIPPED_2D = (
    "skipped: 2D input (one slice): the thresholds are volumes (mL) and a single slice has "
    "no volume; no component filtering or ET relabelling was applied"
)


def is_single_slice(label: np.ndarray) -> bool:
    """True for 2D input: an (X, Y, Z) grid with a size-1 axis (HDF5 or 2D NIfTI slices)."""
    return label.ndim < 3 or min(label.shape) == 1


def postprocess(
    label: np.ndarray, *, voxel_ml: float, config: PostprocessConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply :class:`PostprocessConfig` to (X, Y, Z) internal codes.

    Both rules are volumes (mL), so they apply only where a volume exists: on 2D input
    (one slice, see :func:`is_single_slice`) nothing is changed and the record says why. A
    slice's "volume" is its area times the slice thickness, which has nothing to do with the
    tumour's 3D size: the model card's 10 mL would remove a whole tumour seen in one slice,
    and there is no principled per-slice area to convert it to, so 2D input is not filtered.

    Returns:
        (cleaned label, record: the thresholds, ``applied`` (whether they were used),
        ``skipped`` (why not, else None), components removed, ``wt_before_ml`` (whole-tumour
        volume predicted before postprocessing), ``removed_ml`` and ``removed_fraction``
        (what component removal took away, and its share of ``wt_before_ml``; 0 when
        nothing was predicted), voxels relabelled).
    """
    out = label.copy()
    active = config.min_component_ml > 0 or config.et_to_ncr_below_ml > 0
    skipped = SKIPPED_2D if active and is_single_slice(label) else None
    before = int(np.count_nonzero(out)) * voxel_ml
    record: dict[str, Any] = {
        **config.to_dict(),
        "applied": active and skipped is None,
        "skipped": skipped,
        "components_removed": 0,
        "wt_before_ml": before,
        "removed_ml": 0.0,
        "removed_fraction": 0.0,
        "et_relabelled_voxels": 0,
    }
    if skipped is not None:
        return out, record
    box = bounding_box(out) if config.min_component_ml > 0 else None
    if box is not None:
        comps, n = connected_components(out[box] > 0)
        if n:
            sizes = np.bincount(comps.ravel())[1:] * voxel_ml
            small = np.flatnonzero(sizes < config.min_component_ml) + 1
            out[box][np.isin(comps, small)] = 0
            record["components_removed"] = int(small.size)
            record["removed_ml"] = float(sizes[small - 1].sum())
            record["removed_fraction"] = record["removed_ml"] / before if before else 0.0
    if config.et_to_ncr_below_ml > 0:
        et = out == ET
        if 0 < et.sum() * voxel_ml < config.et_to_ncr_below_ml:
            out[et] = NCR
            record["et_relabelled_voxels"] = int(et.sum())
    return out, record


#: What the position fields of :func:`tumour_geometry` are measured in (also in the summary).
COORDINATES = {
    "bbox_voxels": (
        "voxel indices of the input file's array as stored (the _seg output has the same "
        "grid): start inclusive, stop exclusive, per array axis"
    ),
    "centroid_voxel": "fractional voxel indices of the input file's array",
    "centroid_mm": "scanner RAS+ mm (x to the patient's Right, y Anterior, z Superior)",
    "extent_mm": (
        "size of the bounding box along scanner x, y, z (RAS+; for an oblique file, along the "
        "image axes nearest to them), mm"
    ),
}


def tumour_geometry(
    label: np.ndarray,
    affine: np.ndarray,
    *,
    brain: np.ndarray | None = None,
    to_input: Callable[[np.ndarray], np.ndarray] | None = None,
    image: np.ndarray | None = None,
    orientation_known: bool = True,
) -> dict[str, Any]:
    """Where the whole tumour is: components, bounding box, extent, centroid, hemisphere.

    Args:
        label: (X, Y, Z) internal codes on a RAS+ canonical grid.
        affine: Its voxel -> scanner (mm) matrix.
        brain: Optional (X, Y, Z) brain mask shipped with the data.
        to_input: Maps (N, 3) canonical voxel indices to the input file's array indices
            (:meth:`gliomaseg.core.case.Case.source_indices`); without it voxel positions are
            indices of ``label``.
        image: Optional (C, X, Y, Z) image: the brain's source without a mask.
        orientation_known: False (the input does not record left and right): no hemisphere.

    Returns:
        JSON-ready dict (units in :data:`COORDINATES`); an empty mask gives zeros and None,
        never an error. ``hemisphere`` is :func:`gliomaseg.core.laterality.tumour_side`'s
        laterality (left, right, bilateral, midline; relative to the brain's midline, the same
        as ``explain`` and the report); ``hemisphere_note`` says why it is None when the
        orientation is unknown.
    """
    wt = label > 0
    side = tumour_side(
        wt, affine, brain_mask=brain, image=image, orientation_known=orientation_known
    )
    note = {"hemisphere_note": side["laterality_note"]} if "laterality_note" in side else {}
    box = bounding_box(wt)
    if box is None:
        return {**_no_tumour(), **note}
    _, n = connected_components(wt[box])
    lo, hi = np.array([s.start for s in box]), np.array([s.stop - 1 for s in box])
    centroid = np.argwhere(wt).mean(axis=0)
    centroid_mm = voxel_to_world(centroid, affine)
    extent = (hi - lo + 1) * np.asarray(voxel_spacing(affine))
    if to_input is not None:  # flips and axis swaps: the two corners bound the box
        corners = np.rint(to_input(np.stack([lo, hi]))).astype(int)
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        centroid = to_input(centroid[None])[0]
    return {
        "components": int(n),
        "bbox_voxels": {"start": lo.tolist(), "stop": (hi + 1).tolist()},
        "extent_mm": [round(float(e), 2) for e in extent],
        "z_extent_mm": round(float(extent[2]), 2),
        "centroid_voxel": [round(float(c), 2) for c in centroid],
        "centroid_mm": [round(float(c), 2) for c in centroid_mm],
        "hemisphere": side["laterality"],
        **note,
    }


def _no_tumour() -> dict[str, Any]:
    """:func:`tumour_geometry` of an empty mask: zeros and None, never an error."""
    return {
        "components": 0,
        "bbox_voxels": None,
        "extent_mm": [0.0, 0.0, 0.0],
        "z_extent_mm": 0.0,
        "centroid_voxel": None,
        "centroid_mm": None,
        "hemisphere": None,
    }


def region_volumes(label: np.ndarray, voxel_ml: float, *, binary: bool = False) -> dict[str, float]:
    """Volumes (mL) per internal label and per BraTS region (only WT for binary schemes)."""
    if binary:
        return {"WT": round(float((label > 0).sum() * voxel_ml), 4)}
    return {k: round(v * voxel_ml, 4) for k, v in region_counts(label).items()}
