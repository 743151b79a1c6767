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

import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gliomaseg.labels import BRATS2020, onehot_to_internal

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


def read_h5_slice(
    path: Path,
) -> tuple[NDArray[np.float32], NDArray[np.uint8] | None, NDArray[np.float64]]:
    """Read one Kaggle BraTS2020 HDF5 slice.

    Returns:
        image (4, 240, 240, 1) float32 channels FLAIR, T1, T1Gd, T2 in file axes;
        label (240, 240, 1) uint8 internal codes, or None when the file has no ``mask``;
        affine of the slice on the BraTS grid.

    Raises:
        FileNotFoundError / ValueError naming the file: missing, unreadable, wrong datasets
        or shapes, NaN/Inf voxels, overlapping mask channels.
    """
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    try:
        with h5py.File(path, "r") as f:
            if "image" not in f:
                raise ValueError(
                    f"{path}: no 'image' dataset (found {sorted(f.keys())}); "
                    "expected the Kaggle BraTS2020 HDF5 layout"
                )
            image = np.asarray(f["image"][()], dtype=np.float32)
            mask = np.asarray(f["mask"][()]) if "mask" in f else None
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"{path}: not a readable HDF5 file ({type(err).__name__}: {err}); "
            "the file is corrupt or truncated: re-download it"
        ) from None
    if image.ndim != 3 or image.shape[-1] != 4:
        raise ValueError(f"{path}: 'image' has shape {image.shape}; expected (H, W, 4)")
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{path}: 'image' holds NaN/Inf values; fix or drop this slice")
    label = None
    if mask is not None:
        label = onehot_to_internal(mask, source=str(path))[..., None]
    parsed = parse_name(path)
    affine = brats_affine(parsed[1] if parsed else 0)
    return np.moveaxis(image, -1, 0)[..., None], label, affine


#: Scheme the HDF5 masks are reported in (their one-hot channels are BraTS 2020 regions).
H5_SCHEME = BRATS2020
