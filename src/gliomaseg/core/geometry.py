"""Voxel-grid geometry: one canonical orientation with an exact inverse, and grid checks.

All processing happens in RAS+ voxel order (nibabel's closest canonical orientation): the
letter names the direction in which scanner coordinates *increase*, so increasing array index
along axis 0 moves towards the patient's Right, axis 1 towards Anterior, axis 2 towards
Superior. We only ever flip and permute axes, never resample, so the inverse
(:func:`from_canonical`) is exact and an output mask lands on the input's own voxels.
Laterality is therefore read from scanner x (the affine), never from array order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nibabel import orientations as nio
from numpy.typing import ArrayLike, NDArray

CANONICAL = "RAS"
_RAS_ORNT = nio.axcodes2ornt(("R", "A", "S"))


def orientation_code(affine: NDArray[np.float64]) -> str:
    """Three-letter orientation code of an affine (``'LPS'``, ``'RAS'``...)."""
    return "".join(str(c) for c in nio.aff2axcodes(affine))


def _apply_ornt(array: NDArray[np.generic], ornt: NDArray[np.float64]) -> NDArray[np.generic]:
    """Apply a nibabel orientation transform to the last three axes of ``array``."""
    lead = array.ndim - 3
    out = array
    for i, (_, flip) in enumerate(ornt):
        if flip == -1:
            out = np.flip(out, axis=lead + i)
    perm = list(range(lead)) + [lead + int(j) for j in np.argsort(ornt[:, 0])]
    return np.ascontiguousarray(out.transpose(perm))


def to_canonical(
    array: NDArray[np.generic], affine: NDArray[np.float64]
) -> tuple[NDArray[np.generic], NDArray[np.float64]]:
    """Reorient (..., X, Y, Z) data to RAS+ voxel order by flips and axis swaps only.

    Args:
        array: Data whose last three axes are the spatial axes of ``affine``.
        affine: 4x4 voxel -> scanner (mm) matrix.

    Returns:
        The reoriented array (contiguous copy) and its affine; scanner coordinates of every
        voxel are unchanged.
    """
    affine = np.asarray(affine, dtype=np.float64)
    ornt = nio.io_orientation(affine)
    if np.array_equal(ornt, _RAS_ORNT):
        return array, affine
    shape = array.shape[-3:]
    new_affine = affine @ nio.inv_ornt_aff(ornt, shape)
    return _apply_ornt(array, ornt), new_affine


def from_canonical(
    array: NDArray[np.generic], source_affine: NDArray[np.float64]
) -> NDArray[np.generic]:
    """Exact inverse of :func:`to_canonical` for data on the canonical grid (..., X, Y, Z)."""
    ornt = nio.io_orientation(np.asarray(source_affine, dtype=np.float64))
    if np.array_equal(ornt, _RAS_ORNT):
        return array
    back = nio.ornt_transform(_RAS_ORNT, ornt)
    return _apply_ornt(array, back)


def source_index_affine(
    source_affine: NDArray[np.float64], source_shape: Sequence[int]
) -> NDArray[np.float64]:
    """4x4 matrix taking canonical voxel indices to the input array's voxel indices.

    :func:`to_canonical` only flips and permutes axes, so this is a signed permutation plus
    a shift (``n - 1`` along each flipped axis): exact, and the matrix ``to_canonical``
    composes with the input's affine (canonical affine = ``source_affine @ this``).

    Args:
        source_affine: 4x4 affine of the input file.
        source_shape: Spatial shape of the input array; a 2D shape is one slice (Z = 1).
    """
    shape = tuple(int(s) for s in source_shape)[:3]
    shape = shape + (1,) * (3 - len(shape))
    ornt = nio.io_orientation(np.asarray(source_affine, dtype=np.float64))
    return np.asarray(nio.inv_ornt_aff(ornt, shape), dtype=np.float64)


def to_source_indices(
    points: NDArray[np.floating] | NDArray[np.integer],
    source_affine: NDArray[np.float64],
    source_shape: Sequence[int],
) -> NDArray[np.float64]:
    """(N, 3) canonical voxel indices (fractional allowed) -> (N, 3) input-array indices."""
    m = source_index_affine(source_affine, source_shape)
    return np.asarray(points, dtype=np.float64).reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def reorient(array: NDArray[np.generic], source: str, target: str) -> NDArray[np.generic]:
    """Permute and flip the last three axes of ``array`` from one axis code to another.

    Args:
        array: (..., X, Y, Z) data whose spatial axes point along ``source`` (``"RAS"``...).
        source: Three-letter code of the data's axes (the direction of increasing index).
        target: Three-letter code wanted; ``reorient(reorient(a, s, t), t, s)`` is ``a``.

    Returns:
        A contiguous copy (or ``array`` itself when the codes are equal).
    """
    if source == target:
        return array
    ornt = nio.ornt_transform(nio.axcodes2ornt(tuple(source)), nio.axcodes2ornt(tuple(target)))
    return _apply_ornt(array, ornt)


def reorient_affine(
    affine: NDArray[np.float64], shape: Sequence[int], source: str, target: str
) -> NDArray[np.float64]:
    """The affine of ``reorient(array, source, target)`` for an array of spatial ``shape``."""
    if source == target:
        return np.asarray(affine, dtype=np.float64)
    ornt = nio.ornt_transform(nio.axcodes2ornt(tuple(source)), nio.axcodes2ornt(tuple(target)))
    return np.asarray(affine, dtype=np.float64) @ nio.inv_ornt_aff(ornt, tuple(shape))


def check_same_grid(
    grids: Sequence[tuple[str, tuple[int, ...], NDArray[np.float64]]], *, atol: float = 1e-3
) -> None:
    """Check that every file of a case has the same voxel grid.

    Args:
        grids: (file name, spatial shape, affine) for each file.
        atol: Tolerance on affine entries in mm (headers written by different tools differ in
            float rounding).

    Raises:
        ValueError: naming the first file whose shape or affine differs from the first file's.
    """
    if not grids:
        return
    ref_name, ref_shape, ref_affine = grids[0]
    for name, shape, affine in grids[1:]:
        if tuple(shape) != tuple(ref_shape):
            raise ValueError(
                f"{name}: shape {tuple(shape)} differs from {ref_name} {tuple(ref_shape)}; "
                "all modalities must be co-registered on one grid (resample them first)"
            )
        if not np.allclose(affine, ref_affine, atol=atol):
            raise ValueError(
                f"{name}: affine differs from {ref_name} (max difference "
                f"{float(np.abs(affine - ref_affine).max()):.4g} mm); all modalities must share "
                "one grid: co-register/resample them first"
            )


def voxel_to_world(points: ArrayLike, affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """Voxel indices to scanner millimetres.

    Args:
        points: ``(N, 3)`` (or ``(3,)``) voxel indices of the array ``affine`` belongs to.
        affine: 4x4 voxel-to-world matrix.

    Returns:
        float64 array of the same shape as ``points``, in mm (the affine's world axes).
    """
    return np.asarray(points, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]


def bounding_box(
    mask: ArrayLike, *, margin: int = 0, axes: Sequence[int] | None = None
) -> tuple[slice, ...] | None:
    """Tightest box around the nonzero entries of ``mask``, grown by ``margin``.

    Args:
        mask: Array of any dimension; nonzero means inside.
        margin: Entries added on each side of every boxed axis, clipped at the array's border
            (an int >= 0).
        axes: Axes to box (default: all); the other axes get ``slice(0, n)``.

    Returns:
        One slice per axis of ``mask``, or None when ``mask`` has no nonzero entry (callers
        choose their own rule for empty masks: the whole volume, nothing, an error).
    """
    arr = np.asarray(mask) != 0
    if isinstance(margin, bool) or not isinstance(margin, int | np.integer) or margin < 0:
        raise ValueError(f"margin must be an int >= 0, got {margin!r}")
    boxed = set(range(arr.ndim) if axes is None else (a % arr.ndim for a in axes))
    out: list[slice] = []
    for axis, n in enumerate(arr.shape):
        if axis not in boxed:
            out.append(slice(0, n))
            continue
        hits = np.flatnonzero(np.any(arr, axis=tuple(i for i in range(arr.ndim) if i != axis)))
        if hits.size == 0:
            return None
        out.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, n)))
    return tuple(out)


def check_spacing(spacing: ArrayLike, ndim: int = 3) -> NDArray[np.float64]:
    """Validate a voxel-spacing argument: one positive, finite size in mm per axis.

    Args:
        spacing: One size per axis, or a single number used for every axis.
        ndim: Number of spatial axes the spacing must cover.

    Returns:
        float64 array of shape ``(ndim,)``.

    Raises:
        ValueError: naming the spacing given, when it is not ``ndim`` (or 1) positive finite
            numbers.
    """
    try:
        sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        sp = np.array([np.nan])
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(
            f"spacing {spacing!r} does not fit a {ndim}D grid: spacing must be {ndim} positive "
            "voxel sizes in mm (one per axis, or one number for all)"
        )
    return sp
