"""Shape, size, composition and position features of a tumour segmentation, in physical units.

Two entry points, both pure numpy/scipy on internal label codes (0 background, 1 NCR/NET,
2 ED, 3 ET; see :mod:`gliomaseg.core.labels`):

* :func:`case_features` -- one dict for a whole (X, Y, Z) label map: volumes in mL, 3D
  solidity, connected components, composition (shares of the whole tumour and of the
  tumour core), centroid, extent, the extent of the tumour's bulk (after an opening, see
  :func:`opened_mask`), laterality, position.
* :func:`slice_features` -- one dict per slice along an axis: areas in mm², perimeter,
  compactness, solidity, eccentricity, components, composition, bulk extent, laterality.

Every feature is named and explained (formula and unit) in :data:`FEATURE_DOCS`, which is
also the data dictionary of the CSV that :func:`write_features` writes.

Geometry comes from the affine only. Voxel sizes are the column norms of its 3x3 part;
centroids, extents and laterality use scanner coordinates (RAS+ mm: +x = patient Right,
+y = Anterior, +z = Superior), so a flipped array with the matching affine gives the same
answer, and array order never decides left from right.

Laterality is :mod:`gliomaseg.core.laterality`'s, the one definition that ``summary.json`` and
the report use too: the brain's midline is the plane ``x = midline_x_mm``, the scanner x of
the brain's centroid (the brain mask, else the image's non-zero voxels or, without a zero
background, its bright foreground; the field of view's centre otherwise). Tumour voxels within
``midline_band_mm`` (default 5 mm) of that plane are "midline"; the others are left
(x < midline) or right (x > midline). The tumour is "bilateral" when each side holds at least
``bilateral_fraction`` (default 20 %) of its volume, "midline" when at least half of it lies
in the band, and otherwise takes the side that holds more of it. With
``orientation_known=False`` (an input that does not record left and right) every side and
position value is ``None``.

Empty masks never raise: sizes, counts and fractions are 0, and shape descriptors that have
no meaning without a tumour (compactness, solidity, eccentricity, centroid, laterality,
position) are ``None``. With ``binary=True`` (LGG FLAIR abnormality, a plain tumour mask) every
non-zero voxel is "tumour" (WT) and the compartment features (TC, ET, NCR, ED, proportions,
rim) are ``None``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.labels import ED, ET, NCR
from gliomaseg.core.laterality import (
    BILATERAL_FRACTION,
    MIDLINE_BAND_MM,
    MIDLINE_MAJORITY,
    brain_reference,
    laterality_from_fractions,
    midline_x_mm,
    side_of_points,
)
from gliomaseg.io.atomic import write_json_atomic, write_text_atomic

#: Share of the tumour volume (area) a component needs to count in ``n_components_major``.
MAJOR_COMPONENT_FRACTION = 0.05
#: Douglas-Peucker tolerance (pixels) used to take the staircase out of slice contours.
CONTOUR_TOLERANCE_PX = 1.0
#: Radius (mm) of the ball (disc, for slices) of the morphological opening that gives the
#: tumour's *bulk*: parts thinner than about twice this (strands, one-voxel-wide stalks a
#: segmentation leaves) vanish, while any ball of at least this radius is kept whole. 3 mm
#: removes strands up to ~6 mm thick; the smallest bulk kept (a 6 mm ball, 0.1 mL) is far
#: below the smallest size band, so no tumour worth describing is lost.
OPENING_RADIUS_MM = 3.0

#: Compartments (internal label code) and regions reported by volume / area.
COMPARTMENTS: dict[str, int] = {"NCR": NCR, "ED": ED, "ET": ET}
MEASURED: tuple[str, ...] = ("WT", "TC", "ET", "NCR", "ED")
#: Compartments of the tumour core, reported as shares of it (``core_fraction_*``).
CORE_COMPARTMENTS: tuple[str, ...] = ("NCR", "ET")
AXIS_WORDS: tuple[str, ...] = ("x", "y", "z")


def _docs() -> dict[str, str]:
    docs = {
        "kind": '"case" or "slice": which function made the dict.',
        "empty": "True when the whole tumour (WT, label > 0) has no voxel.",
        "binary": "True for binary masks (label > 0 is tumour); compartment features are None.",
        "shape": "Spatial shape (X, Y, Z) of the label map, voxels.",
        "spacing_mm": "Voxel size along array axes 0, 1, 2: column norms of the affine, mm.",
        "voxel_volume_ml": "Volume of one voxel: sx * sy * sz / 1000, mL.",
        "n_voxels": "Number of whole-tumour voxels (label > 0) in the case or slice.",
        "brain_reference": (
            '"brain_mask", "image" (non-zero voxels of any channel), "foreground" (bright '
            'region of an image without zero background) or "field_of_view": what the '
            "midline, brain fraction and position are measured against."
        ),
        "brain_volume_ml": "Brain volume: brain voxels * voxel volume, mL (None without a brain).",
        "brain_fraction": (
            "Whole-tumour volume / brain volume (case) or WT area / brain area in the slice "
            "(slice), 0-1; None without a brain mask or image."
        ),
        "et_rim_fraction": (
            "Share of the one-voxel shell around the necrotic core (6-connected dilation of "
            "NCR minus NCR) that is enhancing tumour, 0-1; None without NCR or for binary masks."
        ),
        "n_components": (
            "Connected components of the whole tumour: 26-connectivity in 3D (case), "
            "8-connectivity in 2D (slice); 0 when empty."
        ),
        "n_components_major": (
            "Components holding at least 5 % of the WT volume (case) or area (slice): specks "
            "left by a segmentation do not count; 0 when empty."
        ),
        "largest_component_fraction": "Volume of the largest WT component / WT volume, 0-1.",
        "solidity": (
            "WT volume / volume of its convex hull (case: 3D hull of the voxels' face "
            "centres; slice: pixels inside the 2D hull of the pixel squares), clipped to 0-1; "
            "None when empty. Ratios of volumes do not change under the affine, so this is "
            "spacing-independent."
        ),
        "irregularity": "1 - solidity, 0-1 (0 = convex); None when empty.",
        "opened_extent_mm": (
            "extent_mm of the whole tumour after a morphological opening by a ball (case) or "
            "disc (slice, in-plane) of radius opening_radius_mm: the size of the tumour's bulk, "
            "blind to strands and stalks thinner than about twice that radius; zeros when "
            "nothing is left (empty or thinner everywhere)."
        ),
        "opening_radius_mm": "Radius of the opening behind opened_extent_mm, mm.",
        "n_slices": "Number of axial (axis 2) slices holding tumour.",
        "height_mm": "n_slices * slice thickness (voxel size along axis 2), mm.",
        "max_slice_area_mm2": "Largest WT area over the axial (axis 2) slices, mm².",
        "centroid_voxel": (
            "WT centroid in (fractional) voxel indices (i, j, k) of the input file's array as "
            "stored (explain passes the mapping; of the label array when none is given)."
        ),
        "centroid_mm": "WT centroid in scanner RAS+ coordinates (x, y, z): affine @ voxel, mm.",
        "extent_mm": (
            "Size of the WT's bounding box along scanner x, y, z: range of voxel centres plus "
            "the extent of one voxel (sum of |affine| along each row), mm; zeros when empty."
        ),
        "midline_x_mm": (
            "Scanner x of the brain's midline plane: x of the brain centroid (or of the field "
            "of view's centre without a brain), mm; None when the orientation is unknown."
        ),
        "midline_band_mm": "Half-width of the band around the midline plane counted as midline, mm.",
        "offset_from_midline_mm": (
            "centroid_mm[0] - midline_x_mm: signed distance of the tumour centroid from the "
            "midline, mm (> 0 = patient Right); None when empty or orientation unknown."
        ),
        "left_fraction": (
            "Share of WT voxels with x < midline - band (patient Left), 0-1; 0 when empty, "
            "None when the orientation is unknown."
        ),
        "right_fraction": (
            "Share of WT voxels with x > midline + band (patient Right), 0-1; 0 when empty, "
            "None when the orientation is unknown."
        ),
        "midline_fraction": (
            "Share of WT voxels with |x - midline| <= band, 0-1; 0 when empty, None when the "
            "orientation is unknown."
        ),
        "laterality": (
            '"left", "right", "bilateral" (both sides >= bilateral fraction of the volume) or '
            '"midline" (>= half in the band); None when empty or when the input does not '
            "record its orientation. From scanner x, not array order "
            "(gliomaseg.core.laterality)."
        ),
        "laterality_note": "Why laterality is None although there is a tumour (if it is).",
        "position_in_brain": (
            "WT centroid as fractions (x, y, z) of the brain's scanner bounding box: 0 = its "
            "left / posterior / inferior edge, 1 = right / anterior / superior; None when empty "
            "or the orientation is unknown."
        ),
        "axis": "Array axis the slices are taken along (2 = axial in RAS+ order).",
        "slice_index": "Index of the slice along that axis.",
        "pixel_area_mm2": "Area of one in-plane pixel: product of the two in-plane voxel sizes.",
        "brain_area_mm2": "Brain area in the slice: brain pixels * pixel area, mm².",
        "perimeter_mm": (
            "Length of the WT boundary: marching-squares contours at level 0.5 (holes "
            "included) simplified by Douglas-Peucker at 1 pixel to remove the staircase, "
            "scaled by the in-plane pixel size, mm; 0 when empty."
        ),
        "compactness": (
            "4 * pi * area / perimeter², clipped to 0-1 (1 = disc, pi/4 = square); None when empty."
        ),
        "eccentricity": (
            "sqrt(1 - l_min / l_max) of the in-plane second moments (mm²) of the WT pixel "
            "squares: 0 = disc, -> 1 = line; None when empty."
        ),
    }
    words = {
        "WT": "whole tumour (labels 1, 2, 3)",
        "TC": "tumour core (labels 1, 3)",
        "ET": "enhancing tumour (label 3)",
        "NCR": "necrotic / non-enhancing core (label 1)",
        "ED": "edema (label 2)",
    }
    for name in MEASURED:
        docs[f"volume_ml_{name}"] = f"Volume of the {words[name]}: voxels * voxel volume, mL" + (
            "." if name == "WT" else " (None for binary masks)."
        )
        docs[f"area_mm2_{name}"] = (
            f"Area of the {words[name]} in the slice: pixels * pixel area, mm²"
            + ("." if name == "WT" else " (None for binary masks).")
        )
    for name in COMPARTMENTS:
        docs[f"proportion_{name}"] = (
            f"{name} volume (case) or area (slice) / WT, 0-1; 0 when empty, None for binary."
        )
    for name in CORE_COMPARTMENTS:
        docs[f"core_fraction_{name}"] = (
            f"{name} volume (case) or area (slice) / tumour core (TC = NCR + ET), 0-1; edema "
            "is not in the denominator. None when the core is empty or for binary masks."
        )
    return docs


#: Every feature key -> its formula and unit.
FEATURE_DOCS: dict[str, str] = _docs()


# --------------------------------------------------------------------------- geometry helpers


def _spacing(affine: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def _check_inputs(
    label: NDArray[np.integer], affine: NDArray[np.floating], brain_mask: NDArray[Any] | None
) -> tuple[NDArray[np.integer], NDArray[np.float64]]:
    lab = np.asarray(label)
    if lab.ndim != 3:
        raise ValueError(
            f"label map must be 3D (X, Y, Z), got shape {lab.shape}; give 2D slices as "
            "(X, Y, 1) arrays"
        )
    if lab.dtype.kind not in "iub":
        raise ValueError(
            f"label map must hold integer codes, got dtype {lab.dtype}; pass internal codes "
            "(Case.label), not an image or probabilities"
        )
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) == 0:
        raise ValueError(
            f"affine must be a finite, invertible 4x4 voxel -> mm matrix, got {aff.tolist()}; "
            "pass Case.affine"
        )
    if brain_mask is not None and np.shape(brain_mask) != lab.shape:
        raise ValueError(
            f"brain mask shape {np.shape(brain_mask)} differs from label shape {lab.shape}; "
            "pass a mask on the label's grid"
        )
    return lab, aff


def _world(points: NDArray[Any], affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """(N, 3) voxel indices -> (N, 3) scanner mm."""
    return np.asarray(points, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]


def _brain_frame(
    brain: NDArray[np.bool_] | None, shape: tuple[int, ...], affine: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Midline x (mm) and scanner bounding box (lo, hi) of the brain or the field of view.

    The box is the brain's index bounding box mapped to scanner space: exact for the
    axis-aligned affines of canonical arrays, slightly larger for oblique ones.
    """
    if brain is None:
        lo_idx, hi_idx = np.zeros(3), np.asarray(shape, dtype=np.float64) - 1
    else:
        idx = [
            np.flatnonzero(np.any(brain, axis=tuple(a for a in range(3) if a != k)))
            for k in range(3)
        ]
        lo_idx = np.array([i[0] for i in idx], dtype=np.float64)
        hi_idx = np.array([i[-1] for i in idx], dtype=np.float64)
    corners = np.array(np.meshgrid(*zip(lo_idx, hi_idx, strict=True), indexing="ij"))
    world = _world(corners.reshape(3, -1).T, affine)
    return midline_x_mm(brain, affine, shape), world.min(axis=0), world.max(axis=0)


def _position(
    points: NDArray[np.intp],
    affine: NDArray[np.float64],
    frame: tuple[float, NDArray[np.float64], NDArray[np.float64]],
    *,
    band_mm: float,
    bilateral_fraction: float,
    orientation_known: bool = True,
) -> dict[str, Any]:
    """Centroid, extent, laterality and position of tumour voxels given as (N, 3) indices."""
    midline_x, lo, hi = frame
    world = _world(points, affine) if len(points) else np.zeros((0, 3))
    out: dict[str, Any] = {
        "centroid_voxel": None,
        "centroid_mm": None,
        "extent_mm": [0.0, 0.0, 0.0],
        **side_of_points(
            world[:, 0],
            midline_x,
            orientation_known=orientation_known,
            band_mm=band_mm,
            bilateral_fraction=bilateral_fraction,
        ),
        "position_in_brain": None,
    }
    if len(points) == 0:
        return out
    centroid = world.mean(axis=0)
    size = np.where(hi - lo > 0, hi - lo, 1.0)
    out.update(
        centroid_voxel=[float(v) for v in points.mean(axis=0)],
        centroid_mm=[float(v) for v in centroid],
        extent_mm=_extent_mm(world, affine),
    )
    if orientation_known:
        out["position_in_brain"] = [float(v) for v in np.clip((centroid - lo) / size, 0.0, 1.0)]
    return out


def _extent_mm(world: NDArray[np.float64], affine: NDArray[np.float64]) -> list[float]:
    """Bounding-box size along scanner x, y, z of (N, 3) voxel centres in mm, N >= 1.

    The range of the centres plus the extent of one voxel (sum of |affine| along each row).
    """
    footprint = np.abs(affine[:3, :3]).sum(axis=1)
    return [float(v) for v in np.ptp(world, axis=0) + footprint]


def ball_footprint(spacing: Sequence[float], radius_mm: float) -> NDArray[np.bool_]:
    """Voxels within ``radius_mm`` of a centre voxel, on a grid of ``spacing`` (mm per axis).

    Returns:
        Boolean array of odd size ``2 * floor(radius_mm / spacing) + 1`` per axis, True where
        the voxel centre lies within ``radius_mm`` (mm) of the middle one.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    reach = np.floor(radius_mm / sp).astype(int)
    grids = np.ogrid[tuple(slice(-int(n), int(n) + 1) for n in reach)]
    return sum((g * s) ** 2 for g, s in zip(grids, sp, strict=True)) <= radius_mm**2


def eroded_mask(
    mask: NDArray[np.bool_], *, spacing: Sequence[float], radius_mm: float = OPENING_RADIUS_MM
) -> NDArray[np.bool_]:
    """Centres of the balls of ``radius_mm`` that fit inside a mask (its erosion by the ball).

    Outside the array counts as background. See :func:`opened_mask`.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros_like(m)
    return np.asarray(ndimage.binary_erosion(m, ball_footprint(spacing, radius_mm)), dtype=bool)


def opened_mask(
    mask: NDArray[np.bool_],
    *,
    spacing: Sequence[float],
    radius_mm: float = OPENING_RADIUS_MM,
) -> NDArray[np.bool_]:
    """Morphological opening of a 2D or 3D mask by a Euclidean ball of ``radius_mm``.

    The union of every ball (voxel centres within ``radius_mm``, in mm from ``spacing``, so
    anisotropic voxels are handled) that fits inside the mask: parts thinner than the ball
    vanish, anything made of such balls is kept whole. Outside the array is background.

    Args:
        mask: (X, Y) or (X, Y, Z) boolean; crop it to the object first for speed.
        spacing: Voxel size (mm) along each axis of ``mask``.
        radius_mm: Radius of the ball.

    Returns:
        Boolean array of ``mask``'s shape, a subset of ``mask``; all False when no ball of
        that radius fits (an empty mask, or one thinner everywhere).
    """
    centres = eroded_mask(mask, spacing=spacing, radius_mm=radius_mm)
    if not centres.any():
        return centres
    grown = ndimage.binary_dilation(centres, ball_footprint(spacing, radius_mm))
    return np.asarray(grown, dtype=bool) & np.asarray(mask, dtype=bool)


def _opened_extent(
    mask: NDArray[np.bool_],
    affine: NDArray[np.float64],
    *,
    axis: int | None = None,
    index: int = 0,
) -> dict[str, Any]:
    """``opened_extent_mm`` of a 3D mask, or of one 2D plane (``axis``, ``index``) of it.

    The opening is the Minkowski sum of the eroded mask and the ball, and the bounding box of
    a Minkowski sum is the sum of the bounding boxes (under any linear map, so also in
    scanner space): the extent needs the erosion only, not the (slower) dilation.
    """
    out: dict[str, Any] = {"opened_extent_mm": [0.0, 0.0, 0.0]}
    out["opening_radius_mm"] = OPENING_RADIUS_MM
    if not mask.any():
        return out
    box = _crop(mask)
    spacing = _spacing(affine)
    if axis is not None:
        spacing = np.delete(spacing, axis)
    centres = eroded_mask(mask[box], spacing=spacing.tolist())
    if not centres.any():
        return out
    ball = np.argwhere(ball_footprint(spacing.tolist(), OPENING_RADIUS_MM))
    points = np.argwhere(centres) + np.array([b.start for b in box])
    if axis is not None:
        points = np.insert(points, axis, index, axis=1)
        ball = np.insert(ball, axis, 0, axis=1)
    ball_world = ball.astype(np.float64) @ affine[:3, :3].T
    extent = np.asarray(_extent_mm(_world(points, affine), affine)) + np.ptp(ball_world, axis=0)
    out["opened_extent_mm"] = [float(v) for v in extent]
    return out


def _composition(
    counts: Mapping[str, int], unit: float, *, binary: bool, prefix: str
) -> dict[str, Any]:
    """Volumes/areas per compartment and region, and proportions of WT."""
    out: dict[str, Any] = {}
    wt = counts["WT"]
    for name in MEASURED:
        out[f"{prefix}_{name}"] = None if binary and name != "WT" else counts[name] * unit
    for name in COMPARTMENTS:
        out[f"proportion_{name}"] = None if binary else (counts[name] / wt if wt else 0.0)
    core = counts["TC"]
    for name in CORE_COMPARTMENTS:
        out[f"core_fraction_{name}"] = None if binary or not core else counts[name] / core
    return out


def _counts(label: NDArray[np.integer], *, binary: bool) -> dict[str, int]:
    wt = int(np.count_nonzero(label))
    if binary:
        return dict.fromkeys(MEASURED, 0) | {"WT": wt}
    per = {name: int(np.count_nonzero(label == code)) for name, code in COMPARTMENTS.items()}
    return {"WT": wt, "TC": per["NCR"] + per["ET"], **per}


def _rim_fraction(label: NDArray[np.integer], *, binary: bool) -> float | None:
    """Share of the one-voxel shell around NCR that is ET (None without NCR)."""
    if binary:
        return None
    ncr = label == NCR
    if not ncr.any():
        return None
    shell = ndimage.binary_dilation(np.pad(ncr, 1)) & ~np.pad(ncr, 1)
    et = np.pad(label == ET, 1)
    return int(np.count_nonzero(shell & et)) / max(int(np.count_nonzero(shell)), 1)


def _crop(mask: NDArray[np.bool_]) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    return tuple(
        slice(int(a), int(b) + 1) for a, b in zip(idx.min(axis=0), idx.max(axis=0), strict=True)
    )


# --------------------------------------------------------------------------- 3D shape


def solidity_3d(mask: NDArray[np.bool_]) -> float | None:
    """Volume of a 3D mask / volume of the convex hull of its voxels' face centres.

    The hull is taken over the voxel centres shifted by half a voxel along each axis (the
    centres of the cube faces): the hull of the centres alone is too small and the hull of
    the cube corners too large for a digitised shape, and the face-centre hull keeps a
    digitised ball's solidity within ~10 % of 1 from a radius of 3 voxels on (0.90 at 5
    voxels, 0.93 at 10, 0.97 at 20). Only the voxels whose centres are hull vertices are
    expanded (the hull of a Minkowski sum is the sum of the hulls). Volume ratios do not
    change under the affine, so index space is used.

    Args:
        mask: (X, Y, Z) boolean.

    Returns:
        Solidity in (0, 1] (clipped: thin or box-like shapes can exceed 1 otherwise); ``None``
        for an empty mask.
    """
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(mask).astype(np.float64)
    if len(pts) == 0:
        return None
    try:
        centres = pts[ConvexHull(pts).vertices]
    except QhullError:  # coplanar or collinear centres: expand them all
        centres = pts
    offsets = np.concatenate([np.eye(3), -np.eye(3)]) * 0.5
    cloud = (centres[:, None, :] + offsets[None]).reshape(-1, 3)
    try:
        hull_volume = float(ConvexHull(cloud).volume)
    except QhullError:  # a single voxel's six face centres always span a volume; be safe
        return 1.0
    return float(min(len(pts) / hull_volume, 1.0))


def case_features(
    label: NDArray[np.integer],
    *,
    affine: NDArray[np.floating],
    brain_mask: NDArray[Any] | None = None,
    image: NDArray[Any] | None = None,
    binary: bool = False,
    orientation_known: bool = True,
    midline_band_mm: float = MIDLINE_BAND_MM,
    bilateral_fraction: float = BILATERAL_FRACTION,
    to_input: Callable[[NDArray[Any]], NDArray[Any]] | None = None,
) -> dict[str, Any]:
    """Features of a whole label map, in mm and mL (keys and formulas: :data:`FEATURE_DOCS`).

    Args:
        label: (X, Y, Z) integer internal codes (0 bg, 1 NCR/NET, 2 ED, 3 ET), any orientation.
        affine: 4x4 voxel -> scanner RAS+ mm matrix of ``label``.
        brain_mask: Optional (X, Y, Z) brain mask: the midline, brain fraction and position
            are measured against it.
        image: Optional (C, X, Y, Z) or (X, Y, Z) skull-stripped image; its non-zero voxels
            are the brain when no ``brain_mask`` is given.
        binary: The label is a binary tumour mask (WT only; compartment features ``None``).
        orientation_known: False for inputs that do not record left and right
            (:attr:`gliomaseg.core.case.Case.orientation_known`): side and position are ``None``.
        midline_band_mm: Half-width of the midline band, mm.
        bilateral_fraction: Share of the volume each side needs for ``"bilateral"``.
        to_input: Maps (N, 3) indices of ``label`` to the input file's array indices
            (:meth:`gliomaseg.core.case.Case.source_indices`) for ``centroid_voxel``; default:
            indices of ``label`` itself.

    Returns:
        Flat dict of JSON-able values (numbers, strings, ``None``, lists of 3 numbers).
        Empty mask: volumes 0, counts 0, shape and position descriptors ``None``.

    Raises:
        ValueError: a label that is not 3D integer codes, a bad affine, or a brain mask or
            image on another grid.
    """
    lab, aff = _check_inputs(label, affine, brain_mask)
    spacing = _spacing(aff)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    brain, reference = brain_reference(lab.shape, brain_mask, image)
    wt = lab > 0
    counts = _counts(lab, binary=binary)
    out: dict[str, Any] = {
        "kind": "case",
        "empty": counts["WT"] == 0,
        "binary": binary,
        "shape": [int(n) for n in lab.shape],
        "spacing_mm": [float(s) for s in spacing],
        "voxel_volume_ml": voxel_ml,
        "n_voxels": counts["WT"],
        **_composition(counts, voxel_ml, binary=binary, prefix="volume_ml"),
        "brain_reference": reference,
        "brain_volume_ml": None if brain is None else int(brain.sum()) * voxel_ml,
        "brain_fraction": None if brain is None else counts["WT"] / max(int(brain.sum()), 1),
    }
    per_slice = wt.sum(axis=(0, 1))
    out.update(
        n_slices=int(np.count_nonzero(per_slice)),
        height_mm=int(np.count_nonzero(per_slice)) * float(spacing[2]),
        max_slice_area_mm2=float(per_slice.max(initial=0)) * float(spacing[0] * spacing[1]),
    )
    out.update(_shape_3d(wt, lab, binary=binary))
    out.update(_opened_extent(wt, aff))
    frame = _brain_frame(brain, lab.shape, aff)
    points = np.argwhere(wt)
    out.update(
        _position(
            points,
            aff,
            frame,
            band_mm=midline_band_mm,
            bilateral_fraction=bilateral_fraction,
            orientation_known=orientation_known,
        )
    )
    _input_centroid(out, to_input)
    return out


def _input_centroid(
    row: dict[str, Any], to_input: Callable[[NDArray[Any]], NDArray[Any]] | None
) -> None:
    """Express ``centroid_voxel`` in the input file's array indices (in place)."""
    if to_input is not None and row.get("centroid_voxel") is not None:
        row["centroid_voxel"] = [float(v) for v in to_input(np.asarray(row["centroid_voxel"]))[0]]


def _n_major(sizes: NDArray[np.integer]) -> int:
    return int(np.count_nonzero(sizes >= MAJOR_COMPONENT_FRACTION * sizes.sum()))


def _shape_3d(wt: NDArray[np.bool_], label: NDArray[np.integer], *, binary: bool) -> dict[str, Any]:
    if not wt.any():
        return {
            "n_components": 0,
            "n_components_major": 0,
            "largest_component_fraction": 0.0,
            "solidity": None,
            "irregularity": None,
            "et_rim_fraction": None,
        }
    box = _crop(wt)
    local = wt[box]
    comp, n = ndimage.label(local, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(comp.ravel())[1:]
    solidity = solidity_3d(local)
    return {
        "n_components": int(n),
        "n_components_major": _n_major(sizes),
        "largest_component_fraction": float(sizes.max() / sizes.sum()),
        "solidity": solidity,
        "irregularity": None if solidity is None else 1.0 - solidity,
        "et_rim_fraction": _rim_fraction(label[box], binary=binary),
    }


# --------------------------------------------------------------------------- 2D shape


def perimeter_2d(mask: NDArray[np.bool_], *, spacing: Sequence[float] = (1.0, 1.0)) -> float:
    """Boundary length of a 2D mask in mm (outer boundaries and holes).

    Marching squares at level 0.5 on the zero-padded mask, each contour simplified with
    Douglas-Peucker at :data:`CONTOUR_TOLERANCE_PX` pixels (the raw contour follows the pixel
    staircase and overestimates a circle by ~6 %), then scaled by the pixel size.

    Args:
        mask: (H, W) boolean.
        spacing: Pixel size (mm) along axes 0 and 1.

    Returns:
        Perimeter in mm; 0 for an empty mask.
    """
    from skimage.measure import approximate_polygon, find_contours

    if not np.any(mask):
        return 0.0
    scale = np.asarray(spacing, dtype=np.float64)
    total = 0.0
    for contour in find_contours(np.pad(mask, 1).astype(np.float32), 0.5):
        simple = approximate_polygon(contour, CONTOUR_TOLERANCE_PX)
        length = _polyline_length(simple * scale)
        # Tiny contours collapse under simplification: keep the raw length for those.
        total += length if len(simple) >= 4 and length > 0 else _polyline_length(contour * scale)
    return total


def _polyline_length(points: NDArray[np.float64]) -> float:
    return float(np.sqrt((np.diff(points, axis=0) ** 2).sum(axis=1)).sum())


def eccentricity_2d(mask: NDArray[np.bool_], *, spacing: Sequence[float] = (1.0, 1.0)) -> float:
    """Eccentricity of the ellipse with the same second moments (mm²) as the pixel squares.

    Args:
        mask: (H, W) boolean, non-empty.
        spacing: Pixel size (mm) along axes 0 and 1.

    Returns:
        sqrt(1 - l_min / l_max), 0 (disc) to 1 (line).
    """
    scale = np.asarray(spacing, dtype=np.float64)
    pts = np.argwhere(mask) * scale
    cov = np.cov(pts.T, bias=True) if len(pts) > 1 else np.zeros((2, 2))
    cov = cov + np.diag(scale**2 / 12.0)  # each pixel's own extent, so one pixel is a square
    low, high = np.linalg.eigvalsh(cov)
    return float(math.sqrt(max(0.0, 1.0 - low / high)))


def solidity_2d(mask: NDArray[np.bool_]) -> float:
    """Pixels of a non-empty 2D mask / pixels inside the convex hull of its pixel squares."""
    from skimage.morphology import convex_hull_image

    local = mask[_crop(mask)]
    hull = convex_hull_image(local)
    return min(int(np.count_nonzero(local)) / max(int(np.count_nonzero(hull | local)), 1), 1.0)


def _plane_shape(mask: NDArray[np.bool_], pixel: NDArray[np.float64]) -> dict[str, Any]:
    """Perimeter, compactness, solidity, eccentricity and components of one 2D WT mask."""
    if not mask.any():
        return {
            "perimeter_mm": 0.0,
            "compactness": None,
            "solidity": None,
            "irregularity": None,
            "eccentricity": None,
            "n_components": 0,
            "n_components_major": 0,
        }
    area = np.count_nonzero(mask) * float(np.prod(pixel))
    perimeter = perimeter_2d(mask, spacing=pixel.tolist())
    solidity = solidity_2d(mask)
    comp, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return {
        "perimeter_mm": perimeter,
        "compactness": min(4.0 * math.pi * area / perimeter**2, 1.0),
        "solidity": solidity,
        "irregularity": 1.0 - solidity,
        "eccentricity": eccentricity_2d(mask, spacing=pixel.tolist()),
        "n_components": int(n),
        "n_components_major": _n_major(np.bincount(comp.ravel())[1:]),
    }


def slice_features(
    label: NDArray[np.integer],
    *,
    affine: NDArray[np.floating],
    axis: int = 2,
    brain_mask: NDArray[Any] | None = None,
    image: NDArray[Any] | None = None,
    binary: bool = False,
    indices: Sequence[int] | None = None,
    orientation_known: bool = True,
    midline_band_mm: float = MIDLINE_BAND_MM,
    bilateral_fraction: float = BILATERAL_FRACTION,
    to_input: Callable[[NDArray[Any]], NDArray[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per-slice features in mm² and mm (keys and formulas: :data:`FEATURE_DOCS`).

    Args:
        label: (X, Y, Z) integer internal codes; a single 2D slice is (X, Y, 1).
        affine: 4x4 voxel -> scanner RAS+ mm matrix of ``label``.
        axis: Array axis the slices are taken along (2 = axial for RAS+ canonical arrays).
        brain_mask: Optional (X, Y, Z) brain mask (midline, brain fraction, position).
        image: Optional (C, X, Y, Z) image whose non-zero voxels are the brain otherwise.
        binary: The label is a binary tumour mask (compartment features ``None``).
        indices: Slices to describe; default every slice along ``axis``.
        orientation_known: False gives ``None`` side and position (see :func:`case_features`).
        midline_band_mm: Half-width of the midline band, mm.
        bilateral_fraction: Share of the area each side needs for ``"bilateral"``.
        to_input: As for :func:`case_features` (``centroid_voxel`` only; ``slice_index``
            stays the index along ``axis`` of ``label``).

    Returns:
        One flat dict per slice, in ``indices`` order. An empty slice has areas 0,
        perimeter 0, 0 components and ``None`` shape/position descriptors.

    Raises:
        ValueError: bad label, affine, grid, axis or slice index.
    """
    lab, aff = _check_inputs(label, affine, brain_mask)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    picks = list(range(lab.shape[axis])) if indices is None else [int(i) for i in indices]
    bad = [i for i in picks if not 0 <= i < lab.shape[axis]]
    if bad:
        raise ValueError(f"slice indices {bad} out of range 0..{lab.shape[axis] - 1}")
    spacing = _spacing(aff)
    pixel = np.delete(spacing, axis)
    pixel_area = float(np.prod(pixel))
    brain, reference = brain_reference(lab.shape, brain_mask, image)
    frame = _brain_frame(brain, lab.shape, aff)
    rows = []
    for index in picks:
        plane = np.take(lab, index, axis=axis)
        counts = _counts(plane, binary=binary)
        brain_px = None if brain is None else int(np.take(brain, index, axis=axis).sum())
        row: dict[str, Any] = {
            "kind": "slice",
            "axis": axis,
            "slice_index": index,
            "empty": counts["WT"] == 0,
            "binary": binary,
            "spacing_mm": [float(s) for s in spacing],
            "pixel_area_mm2": pixel_area,
            "n_voxels": counts["WT"],
            **_composition(counts, pixel_area, binary=binary, prefix="area_mm2"),
            "brain_reference": reference,
            "brain_area_mm2": None if brain_px is None else brain_px * pixel_area,
            "brain_fraction": None if not brain_px else counts["WT"] / brain_px,
            "et_rim_fraction": _rim_fraction(plane, binary=binary) if counts["WT"] else None,
        }
        row.update(_plane_shape(plane > 0, pixel))
        row.update(_opened_extent(plane > 0, aff, axis=axis, index=index))
        points = np.insert(np.argwhere(plane > 0), axis, index, axis=1)
        row.update(
            _position(
                points,
                aff,
                frame,
                band_mm=midline_band_mm,
                bilateral_fraction=bilateral_fraction,
                orientation_known=orientation_known,
            )
        )
        _input_centroid(row, to_input)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- output


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """Lists of 3 become ``key_x/_y/_z`` columns (``_i/_j/_k`` for voxel indices)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list | tuple):
            names = ("i", "j", "k") if key in ("centroid_voxel", "shape") else AXIS_WORDS
            if len(value) != 3:
                names = tuple(str(n) for n in range(len(value)))
            for name, item in zip(names, value, strict=True):
                flat[f"{key}_{name}"] = item
        elif isinstance(value, dict):
            for name, item in value.items():
                flat[f"{key}_{name}"] = item
        else:
            flat[key] = value
    return flat


def features_csv(features: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """CSV text: one row per feature dict, lists expanded to one column per axis."""
    rows = (
        [_flatten(features)] if isinstance(features, Mapping) else [_flatten(r) for r in features]
    )
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else _cell(row[k]) for k in columns})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}" if math.isfinite(value) else ""
    return value


def write_features(
    features: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    stem: str = "features",
) -> tuple[Path, Path]:
    """Write features as ``<stem>.json`` and ``<stem>.csv`` in ``out_dir``, atomically.

    Args:
        features: A :func:`case_features` dict or a list of :func:`slice_features` dicts.
        out_dir: Folder to write into (created when missing).
        stem: File name without extension.

    Returns:
        Paths of the JSON and CSV files. The JSON holds ``{"features": ..., "docs": ...}``
        where ``docs`` is :data:`FEATURE_DOCS` restricted to the keys present.
    """
    out = Path(out_dir)
    rows = [features] if isinstance(features, Mapping) else list(features)
    keys = {k for row in rows for k in row}
    docs = {k: v for k, v in FEATURE_DOCS.items() if k in keys}
    payload = features if isinstance(features, Mapping) else list(features)
    json_path, csv_path = out / f"{stem}.json", out / f"{stem}.csv"
    write_json_atomic(json_path, {"features": payload, "docs": docs})
    write_text_atomic(csv_path, features_csv(features))
    return json_path, csv_path


__all__ = [
    "BILATERAL_FRACTION",
    "CORE_COMPARTMENTS",
    "FEATURE_DOCS",
    "MAJOR_COMPONENT_FRACTION",
    "MIDLINE_BAND_MM",
    "MIDLINE_MAJORITY",
    "OPENING_RADIUS_MM",
    "ball_footprint",
    "case_features",
    "eccentricity_2d",
    "eroded_mask",
    "features_csv",
    "laterality_from_fractions",
    "opened_mask",
    "perimeter_2d",
    "slice_features",
    "solidity_2d",
    "solidity_3d",
    "write_features",
]
