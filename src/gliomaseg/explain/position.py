"""Where a tumour is: centroid, extent, bulk extent, side and position in the brain (scanner mm).

Coordinates come from the affine only (:func:`gliomaseg.core.geometry.voxel_to_world`); the
side is :mod:`gliomaseg.core.laterality`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import voxel_spacing
from gliomaseg.core.geometry import bounding_box, voxel_to_world
from gliomaseg.core.laterality import midline_x_mm, side_of_points
from gliomaseg.explain.shape import OPENING_RADIUS_MM, ball_footprint, eroded_mask

#: Midline x (mm) and the scanner bounding box (lo, hi) of the brain or the field of view.
Frame = tuple[float, NDArray[np.float64], NDArray[np.float64]]


def brain_frame(
    brain: NDArray[np.bool_] | None, shape: tuple[int, ...], affine: NDArray[np.float64]
) -> Frame:
    """Midline x (mm) and scanner bounding box (lo, hi) of the brain or the field of view.

    The box is the brain's index bounding box mapped to scanner space: exact for the
    axis-aligned affines of canonical arrays, slightly larger for oblique ones.
    """
    box = None if brain is None else bounding_box(brain)
    if box is None:
        lo_idx, hi_idx = np.zeros(3), np.asarray(shape, dtype=np.float64) - 1
    else:
        lo_idx = np.array([b.start for b in box], dtype=np.float64)
        hi_idx = np.array([b.stop - 1 for b in box], dtype=np.float64)
    corners = np.array(np.meshgrid(*zip(lo_idx, hi_idx, strict=True), indexing="ij"))
    world = voxel_to_world(corners.reshape(3, -1).T, affine)
    return midline_x_mm(brain, affine, shape), world.min(axis=0), world.max(axis=0)


def position_of(
    points: NDArray[np.intp],
    affine: NDArray[np.float64],
    frame: Frame,
    *,
    band_mm: float,
    bilateral_fraction: float,
    orientation_known: bool = True,
) -> dict[str, Any]:
    """Centroid, extent, laterality and position of tumour voxels given as (N, 3) indices."""
    midline_x, lo, hi = frame
    world = voxel_to_world(points, affine) if len(points) else np.zeros((0, 3))
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
        extent_mm=extent_mm(world, affine),
    )
    if orientation_known:
        out["position_in_brain"] = [float(v) for v in np.clip((centroid - lo) / size, 0.0, 1.0)]
    return out


def extent_mm(world: NDArray[np.float64], affine: NDArray[np.float64]) -> list[float]:
    """Bounding-box size along scanner x, y, z of (N, 3) voxel centres in mm, N >= 1.

    The range of the centres plus the extent of one voxel (sum of |affine| along each row).
    """
    footprint = np.abs(affine[:3, :3]).sum(axis=1)
    return [float(v) for v in np.ptp(world, axis=0) + footprint]


def opened_extent(
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
    box = bounding_box(mask)
    assert box is not None  # mask.any() above
    spacing = np.asarray(voxel_spacing(affine))
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
    extent = np.asarray(extent_mm(voxel_to_world(points, affine), affine)) + np.ptp(
        ball_world, axis=0
    )
    out["opened_extent_mm"] = [float(v) for v in extent]
    return out


__all__ = ["Frame", "brain_frame", "extent_mm", "opened_extent", "position_of"]
