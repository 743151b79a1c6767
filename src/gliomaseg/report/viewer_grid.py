"""The viewer's volumes: the brain box, the embedded grid (at most ``max_voxels``), and the
uint8 gzip NIfTI bytes the page embeds."""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.geometry import bounding_box
from gliomaseg.report.case_data import CaseVolumes

#: Most voxels of one embedded volume. A BraTS case (brain box about 136 x 171 x 146 at
#: 1 mm) is resampled to about 1.5 mm; the README gives the resulting report size.
MAX_VIEWER_VOXELS = 1_000_000


@dataclass(frozen=True)
class Grid:
    """How the embedded grid maps onto the case's canonical grid.

    Attributes:
        start: First canonical voxel of the crop box, per axis (X, Y, Z).
        source_shape: Shape of the crop box (canonical voxels).
        shape: Shape of the embedded volumes.
        spacing: Voxel size of the embedded volumes (mm).
    """

    start: tuple[int, int, int]
    source_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def to_embedded(self, axis: int, index: int) -> int:
        """Embedded index of a canonical index along one axis (nearest; clipped)."""
        n, m = self.source_shape[axis], self.shape[axis]
        rel = index - self.start[axis]
        scaled = rel * (m - 1) / (n - 1) if n > 1 else 0.0
        return int(min(max(round(scaled), 0), m - 1))

    def to_source(self, axis: int, index: int) -> int:
        """Canonical index of an embedded index along one axis (nearest)."""
        n, m = self.source_shape[axis], self.shape[axis]
        scaled = index * (n - 1) / (m - 1) if m > 1 else 0.0
        return round(scaled) + self.start[axis]


def plan_grid(
    spacing: tuple[float, float, float],
    box: tuple[slice, slice, slice],
    *,
    max_voxels: int = MAX_VIEWER_VOXELS,
) -> Grid:
    """The embedded grid of a crop box: at most ``max_voxels``, finest axes coarsened first.

    The target voxel size ``s`` is the smallest for which ``prod(n_i * min(1, sp_i / s))``
    fits; axes coarser than ``s`` keep every voxel. Corner voxels stay aligned (as
    :func:`scipy.ndimage.zoom` with ``grid_mode=False``).
    """
    src = tuple(int(b.stop - b.start) for b in box)
    sp = np.asarray(spacing, dtype=np.float64)

    def sized(s: float) -> tuple[int, ...]:
        return tuple(
            max(1, math.ceil(n * min(1.0, float(p) / s))) for n, p in zip(src, sp, strict=True)
        )

    lo, hi = float(sp.min()), float(sp.max()) * max(src) + 1.0
    if math.prod(sized(lo)) > max_voxels:
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if math.prod(sized(mid)) > max_voxels else (lo, mid)
        out = sized(hi)
    else:
        out = sized(lo)
    new_sp = tuple(
        float(p) * (n - 1) / (m - 1) if m > 1 else float(p) * n
        for n, m, p in zip(src, out, sp, strict=True)
    )
    start = tuple(int(b.start) for b in box)
    return Grid(start, src, out, new_sp)  # type: ignore[arg-type]


def brain_box(volumes: CaseVolumes, *, margin: int = 2) -> tuple[slice, slice, slice] | None:
    """The 3D box of non-zero image voxels and masks, plus ``margin``; None if all empty."""
    arrays = [v != 0 for v in volumes.images.values()]
    arrays += [m > 0 for m in (volumes.prediction,) if m is not None]
    if not arrays:
        return None
    return bounding_box(np.any(arrays, axis=0), margin=margin)  # type: ignore[return-value]


def resample(data: NDArray[Any], grid: Grid, *, order: int) -> NDArray[Any]:
    """A crop-box array on the embedded grid (corners aligned; 0: nearest, 1: linear)."""
    from scipy import ndimage

    if grid.shape == grid.source_shape:
        return data
    step = [
        (n - 1) / (m - 1) if m > 1 else 0.0
        for n, m in zip(grid.source_shape, grid.shape, strict=True)
    ]
    # Labels: nearest neighbour on the codes; images: linear in float, rounded back.
    out = ndimage.affine_transform(
        data if order == 0 else data.astype(np.float32),
        np.asarray(step),
        output_shape=grid.shape,
        order=order,
        mode="nearest",
    )
    return out if order == 0 else np.rint(out).astype(data.dtype)


def quantise(data: NDArray[np.floating], window: tuple[float, float]) -> NDArray[np.uint8]:
    """uint8 display values: 0 where the image is 0 (outside the brain), else the window
    ``(low, high)`` mapped linearly onto 1..255 (values outside it clipped; NaN as 0)."""
    lo, hi = window
    x = np.nan_to_num(np.asarray(data, dtype=np.float32))
    scaled = (x - np.float32(lo)) * np.float32(254.0 / max(hi - lo, 1e-12)) + np.float32(1.0)
    np.clip(scaled, 1.0, 255.0, out=scaled)
    out = np.rint(scaled).astype(np.uint8)
    out[x == 0] = 0
    return out


def nifti_gz(data: NDArray[np.uint8], spacing: tuple[float, float, float]) -> bytes:
    """A gzip NIfTI-1 file (bytes) of a uint8 RAS+ volume with a diagonal affine (mm).

    Deterministic: the gzip header carries no time stamp.
    """
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    img = nib.Nifti1Image(np.asarray(data, dtype=np.uint8), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    # Level 6: within 0.5% of level 9 on MR volumes, about five times faster.
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)
