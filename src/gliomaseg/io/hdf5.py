"""Kaggle "BraTS2020 training data (HDF5)" slices: ``volume_<V>_slice_<S>.h5``.

Each file holds one axial slice of a BraTS 2020 training volume:

* ``image``: (240, 240, 4) float64, channels FLAIR, T1, T1Gd, T2, each z-scored over the
  whole slice (background included), in the NIfTI array's own in-plane axes;
* ``mask``: (240, 240, 3) uint8 one-hot, channels NCR/NET, ED, ET.

The slices were cut from BraTS arrays, so the BraTS grid's LPS affine is attached
(``diag(-1, -1, 1)``, origin (0, 239, S)): after canonicalisation a slice lines up with the
same axial slice of the source NIfTI.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.errors import InputError
from gliomaseg.core.labels import BRATS2020, ONEHOT_BRATS_CHANNELS, onehot_to_internal
from gliomaseg.io import limits
from gliomaseg.io.atomic import atomic_path

H5_CHANNELS: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
_NAME = re.compile(r"volume_(\d+)_slice_(\d+)$")


def brats_affine(slice_index: int = 0) -> NDArray[np.float64]:
    """The affine of the BraTS 240x240x155 grid (LPS, 1 mm), shifted to one axial slice."""
    return np.array(
        [[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, float(slice_index)], [0, 0, 0, 1]]
    )


def parse_name(path: Path) -> tuple[int, int] | None:
    """(volume, slice) from ``volume_V_slice_S.h5``, or None for other names."""
    m = _NAME.search(path.stem)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _dataset(path: Path, f: Any, name: str, channels: int) -> Any:
    """The ``(H, W, channels)`` numeric dataset ``name``, checked from its metadata only."""
    if name not in f or not hasattr(f[name], "shape"):
        raise InputError(
            f"{path}: no '{name}' dataset (found {sorted(f.keys())}); "
            "expected the Kaggle BraTS2020 HDF5 layout (image and mask): re-download it"
        )
    ds = f[name]
    shape, dtype = tuple(int(n) for n in ds.shape), ds.dtype
    if len(shape) != 3 or shape[-1] != channels or min(shape) < 1:
        raise InputError(f"{path}: '{name}' has shape {shape}; expected (H, W, {channels})")
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: '{name}' has data type {dtype}; expected numbers")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limits.MAX_SLICE_BYTES:
        raise InputError(
            f"{path}: '{name}' {shape} {dtype} is {limits.gib(nbytes)}, over the "
            f"{limits.gib(limits.MAX_SLICE_BYTES)} limit (gliomaseg.io.limits.MAX_SLICE_BYTES); "
            "pass one slice per file"
        )
    return ds


def read_h5_slice(
    path: Path, *, read_mask: bool = True
) -> tuple[NDArray[np.float32], NDArray[np.uint8] | None, NDArray[np.float64]]:
    """Read one Kaggle BraTS2020 HDF5 slice.

    Shapes, data types and sizes are checked from the datasets' metadata before they are read.

    Args:
        path: ``volume_<V>_slice_<S>.h5``.
        read_mask: With False, ``mask`` is neither required nor read (segmenting new data).

    Returns:
        image (4, 240, 240, 1) float32 channels FLAIR, T1, T1Gd, T2 in file axes;
        label (240, 240, 1) uint8 internal codes, or None when ``read_mask`` is False;
        affine of the slice on the BraTS grid.

    Raises:
        FileNotFoundError: no such file.
        InputError naming the file: unreadable, missing ``image``/``mask``, wrong shapes or
        channel counts, a size over :data:`limits.MAX_SLICE_BYTES`, NaN/Inf values, a
        mask that is not one-hot.
    """
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    try:
        with h5py.File(path, "r") as f:
            image_ds = _dataset(path, f, "image", len(H5_CHANNELS))
            mask_ds = _dataset(path, f, "mask", 3) if read_mask else None
            if mask_ds is not None and mask_ds.shape[:2] != image_ds.shape[:2]:
                raise InputError(
                    f"{path}: 'mask' {mask_ds.shape} and 'image' {image_ds.shape} differ in "
                    "size; the file is corrupt: re-download it"
                )
            image = np.asarray(image_ds[()], dtype=np.float32)
            mask = np.asarray(mask_ds[()]) if mask_ds is not None else None
    except InputError:
        raise
    except Exception as err:
        raise InputError(
            f"{path}: not a readable HDF5 file ({type(err).__name__}: {err}); "
            "the file is corrupt or truncated: re-download it"
        ) from None
    if not np.all(np.isfinite(image)):
        raise InputError(f"{path}: 'image' holds NaN/Inf values; fix or drop this slice")
    label = None
    if mask is not None:
        try:
            label = onehot_to_internal(mask, source=str(path))[..., None]
        except ValueError as err:
            raise InputError(f"{err}; fix or re-download the file") from None
    parsed = parse_name(path)
    affine = brats_affine(parsed[1] if parsed else 0)
    return np.moveaxis(image, -1, 0)[..., None], label, affine


#: Scheme the HDF5 masks are reported in (their one-hot channels are BraTS 2020 regions).
H5_SCHEME = BRATS2020


def default_h5_slices(label: NDArray[Any] | None, depth: int, *, max_slices: int = 3) -> list[int]:
    """Up to ``max_slices`` axial indices evenly spread over the central half of the tumour.

    Args:
        label: (X, Y, Z) internal codes, or ``None``.
        depth: Number of axial slices (Z).
        max_slices: Upper bound on the number of indices.

    Returns:
        Sorted distinct z indices; ``[depth // 2]`` when there is no tumour.
    """
    if label is None or not np.any(label):
        return [depth // 2]
    tumour = np.flatnonzero(np.asarray(label).any(axis=(0, 1)))
    lo, hi = np.quantile(tumour, 0.25), np.quantile(tumour, 0.75)
    picks = np.rint(np.linspace(lo, hi, max(int(max_slices), 1))).astype(int)
    candidates = sorted({int(tumour[np.argmin(np.abs(tumour - p))]) for p in picks})
    return candidates[: max(int(max_slices), 1)]


def _volume_number(case_id: str) -> int:
    match = re.search(r"(\d+)$", case_id)
    if match is None:
        raise ValueError(
            f"case id '{case_id}' ends in no number; pass volume=<int> for the h5 layout"
        )
    return int(match.group(1))


def _zscore(channel: NDArray[np.float64]) -> NDArray[np.float64]:
    """Kaggle BraTS2020 slice normalisation over the whole slice; all-constant -> zeros."""
    std = float(channel.std())
    if std == 0.0:
        return np.zeros_like(channel)
    return (channel - channel.mean()) / std


def write_h5_slices(
    stack: NDArray[np.float64],
    label: NDArray[Any] | None,
    out: Path,
    *,
    case_id: str,
    slices: Sequence[int] | None = None,
    max_slices: int = 3,
    volume: int | None = None,
) -> Path:
    """Write axial slices of a case as Kaggle ``volume_<V>_slice_<S>.h5`` files in ``out``.

    Args:
        stack: (X, Y, Z, 4) float64 volumes in :data:`H5_CHANNELS` order.
        label: (X, Y, Z) internal codes, or None (the masks are then all zero).
        out: Folder to write into.
        case_id: Names ``<V>`` (its trailing number) unless ``volume`` is given.
        slices: Axial indices to write (default :func:`default_h5_slices`).
        max_slices: How many tumour slices the default picks.
        volume: The ``<V>`` of the file names.

    Returns:
        ``out``.
    """
    import h5py

    vol = _volume_number(case_id) if volume is None else int(volume)
    depth = stack.shape[2]
    chosen = (
        list(slices)
        if slices is not None
        else default_h5_slices(label, depth, max_slices=max_slices)
    )
    bad = [s for s in chosen if not 0 <= int(s) < depth]
    if bad:
        raise ValueError(f"{case_id}: slice index(es) {bad} outside 0..{depth - 1}")
    for s in chosen:
        image = np.stack([_zscore(stack[:, :, s, c]) for c in range(stack.shape[-1])], axis=-1)
        mask = np.zeros((*stack.shape[:2], len(ONEHOT_BRATS_CHANNELS)), dtype=np.uint8)
        if label is not None:
            for k, code in enumerate(ONEHOT_BRATS_CHANNELS):
                mask[..., k] = label[:, :, s] == code
        with atomic_path(out / f"volume_{vol}_slice_{int(s)}.h5") as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("image", data=image.astype(np.float64))
            f.create_dataset("mask", data=mask)
    return out
