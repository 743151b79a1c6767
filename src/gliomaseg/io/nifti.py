"""NIfTI reading with the checks users need, and atomic NIfTI writing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from gliomaseg.io.atomic import atomic_path

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti(path: Path) -> bool:
    """True for ``.nii`` / ``.nii.gz`` file names (case-insensitive)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


@dataclass
class NiftiHeaderInfo:
    """Geometry of a NIfTI file, read without loading its voxels."""

    path: Path
    shape: tuple[int, ...]
    affine: NDArray[np.float64]
    header: nib.Nifti1Header


def _open(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for broken files
        raise ValueError(
            f"{path}: not a readable NIfTI file ({type(err).__name__}: {err}); "
            "the file is corrupt or truncated: re-download or re-export it"
        ) from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(f"{path}: {type(img).__name__} is not NIfTI; convert it to .nii.gz")
    return img


def read_header(path: str | Path) -> NiftiHeaderInfo:
    """Shape, affine and header of a NIfTI file (cheap: voxels are not decompressed)."""
    path = Path(path)
    img = _open(path)
    return NiftiHeaderInfo(
        path, tuple(int(s) for s in img.shape), img.affine.astype(np.float64), img.header
    )


def _read_voxels(img: nib.Nifti1Image, path: Path, dtype: type) -> NDArray[np.generic]:
    try:
        return (
            np.asarray(img.dataobj, dtype=dtype) if dtype is not None else np.asarray(img.dataobj)
        )
    except Exception as err:
        raise ValueError(
            f"{path}: NIfTI voxel data cannot be read ({type(err).__name__}: {err}); "
            "the file is corrupt or truncated: re-download or re-export it"
        ) from None


def read_image(
    path: str | Path, *, allow_empty: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Read an intensity image as float32 (scaling applied) with its affine.

    Args:
        path: ``.nii`` or ``.nii.gz`` file, 2D, 3D or 4D.
        allow_empty: Accept an image whose voxels are all zero.

    Returns:
        (data, affine); data has the file's own axis order, float32.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: corrupt/truncated file, NaN/Inf voxels, or an all-zero image; the message
            names the file and the fix.
    """
    path = Path(path)
    img = _open(path)
    data = np.asarray(_read_voxels(img, path, np.float32), dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        raise ValueError(
            f"{path}: {int(bad.sum())} NaN/Inf voxel(s); fix or mask them (e.g. set to 0) before use"
        )
    if not allow_empty and not np.any(data):
        raise ValueError(
            f"{path}: every voxel is zero; the modality is empty: re-export it or leave it out"
        )
    return data, img.affine.astype(np.float64)


def read_label(path: str | Path) -> tuple[NDArray[np.generic], NDArray[np.float64]]:
    """Read a label map's raw values (no scaling, file dtype) with its affine.

    Integer checks and the scheme conversion happen in :meth:`LabelScheme.encode`.
    """
    path = Path(path)
    img = _open(path)
    if img.dataobj.slope not in (1.0, None) or img.dataobj.inter not in (0.0, None):  # type: ignore[attr-defined]
        data = _read_voxels(img, path, np.float64)
    else:
        data = _read_voxels(img, path, None)  # type: ignore[arg-type]
    return data, img.affine.astype(np.float64)


def write_nifti(
    path: str | Path,
    data: NDArray[np.generic],
    affine: NDArray[np.float64],
    *,
    header: nib.Nifti1Header | None = None,
    dtype: type | None = None,
    slope: float = 1.0,
) -> None:
    """Write a NIfTI file atomically, keeping the reference header's geometry.

    Args:
        path: Output ``.nii.gz`` / ``.nii`` path.
        data: Array in the file's voxel order.
        affine: 4x4 voxel -> scanner matrix (written to both sform and qform).
        header: Header whose geometry fields (pixdim, xyzt units, sform/qform codes) are kept.
        dtype: On-disk data type (defaults to ``data.dtype``).
        slope: ``scl_slope`` stored in the header (readers multiply voxels by it): lets
            probabilities live in uint8 as value * 255 with slope 1/255.
    """
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(np.asarray(data), affine, header=hdr)
    img.set_data_dtype(dtype or np.asarray(data).dtype)
    if hdr is not None:
        sform_code = int(hdr["sform_code"]) or 1
        qform_code = int(hdr["qform_code"]) or 1
        img.set_sform(affine, code=sform_code)
        img.set_qform(affine, code=qform_code)
    img.header["scl_slope"] = slope
    img.header["scl_inter"] = 0.0
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
