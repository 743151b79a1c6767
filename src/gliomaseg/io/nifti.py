"""NIfTI reading with the checks users need, and atomic NIfTI writing.

A corrupt input must be an error, never a result, and a forged one must fail before it
allocates. So every read parses the header from the file's first bytes and checks it
(dimensions, data type, voxel size, sform/qform, and the declared size against
:data:`gliomaseg.io.limits.MAX_NIFTI_BYTES`) before any voxel is touched. Voxel reads then
stream the whole file, and for ``.nii.gz`` Python's :mod:`gzip` checks every member's CRC-32
and length at its end, so a flipped byte, a truncated download or trailing garbage is
reported instead of read as voxels. nibabel's gzip reader does not check the CRC of a read
that stops at the end of the voxel data, which is why ``nib.load`` is not used here.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.errors import InputError, one_line
from gliomaseg.io import limits
from gliomaseg.io.atomic import atomic_path

NIFTI_SUFFIXES = (".nii.gz", ".nii")

_CHUNK = 1 << 20  # decompression step: bounds the overshoot past the declared size
_CORRUPT = "the file is corrupt or truncated: re-download or re-export it"
_HEADER_CLASSES: dict[int, type[nib.Nifti1Image]] = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


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


def _bad(path: Path, what: str, fix: str = _CORRUPT) -> InputError:
    return InputError(f"{path}: {one_line(what)}; {fix}")


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _open_stream(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if _is_gz(path) else open(path, "rb")


def _read_prefix(path: Path, n: int = 540) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    try:
        with _open_stream(path) as f:
            return f.read(n)
    except (OSError, EOFError, zlib.error) as err:
        raise _bad(path, f"not a readable NIfTI file ({type(err).__name__}: {err})") from None


def _parse_header(path: Path, raw: bytes) -> tuple[type[nib.Nifti1Image], nib.Nifti1Header]:
    """The image class and header from a file's first bytes (extensions are not read)."""
    sizes = {struct.unpack(f"{order}i", raw[:4])[0] for order in "<>"} if len(raw) >= 4 else set()
    size = next((s for s in sizes if s in _HEADER_CLASSES), None)
    if size is None:
        raise _bad(
            path,
            "not a NIfTI file (no NIfTI-1/2 header size at byte 0)",
            "convert it to .nii.gz, or re-download it if it should be NIfTI",
        )
    if len(raw) < size:
        raise _bad(path, f"NIfTI header cut short ({len(raw)} of {size} bytes)")
    klass = _HEADER_CLASSES[size]
    try:
        header = klass.header_class.from_fileobj(io.BytesIO(raw[:size]), check=False)
        _check_pixdim(path, header)  # before nibabel's check_fix turns a zero into a one
        header.check_fix()  # nibabel's own checks and fixes, as nib.load applies them
    except InputError:
        raise
    except Exception as err:  # nibabel raises several types for a broken header
        raise _bad(path, f"invalid NIfTI header ({type(err).__name__}: {err})") from None
    if bytes(header["magic"]).rstrip(b"\0") not in (b"n+1", b"n+2"):
        raise _bad(
            path,
            f"not a single-file NIfTI (magic {bytes(header['magic'])!r})",
            "save image and header as one .nii/.nii.gz file",
        )
    return klass, header


def _check_shape(path: Path, header: nib.Nifti1Header) -> tuple[tuple[int, ...], int]:
    """Shape and declared total size in bytes (header, extensions and voxels), within limits."""
    try:
        shape = tuple(int(s) for s in header.get_data_shape())
        dtype = header.get_data_dtype()
    except Exception as err:
        raise _bad(
            path, f"invalid NIfTI dimensions or data type ({type(err).__name__}: {err})"
        ) from None
    if not 2 <= len(shape) <= 5 or min(shape) < 1:
        raise _bad(path, f"NIfTI shape {shape}; expected 2 to 5 dimensions, each at least 1")
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise _bad(
            path,
            f"NIfTI data type {dtype} is not supported",
            "convert it to an integer or floating-point type (e.g. float32, int16, uint8)",
        )
    offset = int(header.get_data_offset())
    if offset < int(header.sizeof_hdr):
        raise _bad(path, f"voxel data offset {offset} lies inside the header")
    total = offset + math.prod(shape) * dtype.itemsize
    if total > limits.MAX_NIFTI_BYTES:
        raise _bad(
            path,
            f"header declares {'x'.join(map(str, shape))} {dtype} voxels ({limits.gib(total)}), "
            f"over the {limits.gib(limits.MAX_NIFTI_BYTES)} limit (gliomaseg.io.limits.MAX_NIFTI_BYTES)",
            "crop or split the image; if it should be small, the header is corrupt: re-export it",
        )
    return shape, total


def _singular(matrix: NDArray[np.float64]) -> bool:
    norms = np.linalg.norm(matrix, axis=0)
    return bool(np.any(norms == 0) or abs(np.linalg.det(matrix)) <= 1e-6 * float(np.prod(norms)))


def _check_pixdim(path: Path, header: nib.Nifti1Header) -> None:
    """Spatial voxel sizes finite and non-zero (nibabel reads a negative one as its absolute value)."""
    ndim = int(header["dim"][0])
    pixdim = np.asarray(header["pixdim"][1 : 1 + min(max(ndim, 1), 3)], dtype=np.float64)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        raise _bad(
            path,
            f"voxel size (pixdim) {pixdim.tolist()} is not finite and non-zero",
            "fix the voxel size in the header (e.g. re-export from the scanner software)",
        )


def _check_geometry(path: Path, header: nib.Nifti1Header) -> NDArray[np.float64]:
    """The affine nibabel would use, after checking that sform and qform are usable."""
    matrices = []
    try:
        if header["sform_code"] > 0:
            matrices.append(("sform", header.get_sform()))
        if header["qform_code"] > 0:
            matrices.append(("qform", header.get_qform()))
        affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    except Exception as err:
        raise _bad(path, f"invalid NIfTI orientation ({type(err).__name__}: {err})") from None
    for name, matrix in [*matrices, ("affine", affine)]:
        matrix = np.asarray(matrix, dtype=np.float64)
        if not np.all(np.isfinite(matrix)) or _singular(matrix[:3, :3]):
            raise _bad(
                path,
                f"the {name} voxel-to-world matrix is {'singular' if np.all(np.isfinite(matrix)) else 'not finite'}",
                "fix the header's orientation (sform/qform), e.g. re-export the image",
            )
    return affine


def _checked_header(
    path: Path,
) -> tuple[type[nib.Nifti1Image], nib.Nifti1Header, tuple[int, ...], NDArray[np.float64], int]:
    """Class, header, shape, affine and declared total size of a file that passed every check."""
    klass, header = _parse_header(path, _read_prefix(path))
    shape, total = _check_shape(path, header)
    return klass, header, shape, _check_geometry(path, header), total


def _read_all(path: Path, expected: int) -> NDArray[np.uint8]:
    """The file's (decompressed) bytes, which must be exactly ``expected`` long.

    A ``.gz`` is streamed to its end so that :mod:`gzip` checks each member's CRC-32 and
    length and rejects trailing garbage; reading stops as soon as the stream passes
    ``expected``, so a gzip bomb never holds more than ``expected + _CHUNK`` bytes. The
    bytes are decompressed straight into the returned buffer (no further copy).
    """
    buf = np.empty(expected + _CHUNK, dtype=np.uint8)
    n = 0
    with buf.data as view:
        try:
            with _open_stream(path) as f:
                while n <= expected and (got := f.readinto(view[n : n + _CHUNK])):
                    n += got
        except (OSError, EOFError, zlib.error) as err:
            what = "gzip stream ended early" if isinstance(err, EOFError) else str(err)
            raise _bad(path, f"not a readable NIfTI file ({type(err).__name__}: {what})") from None
    if n > expected:
        raise _bad(
            path,
            f"holds more than the {expected} bytes its header declares "
            "(extra data or a second gzip member)",
        )
    if n < expected:
        raise _bad(path, f"holds {n} bytes of NIfTI data but its header declares {expected}")
    return buf


def _voxels(path: Path, *, label: bool) -> tuple[NDArray[np.generic], NDArray[np.float64]]:
    """Voxels scaled exactly as ``np.asarray(img.dataobj, dtype)`` would, and the affine.

    ``dtype`` is float32 for images; for labels it is the file's own type, or float64 when
    the header scales the values.

    The scaling is nibabel's ``ArrayProxy._get_scaled``, applied to an array that views the
    checked bytes (nibabel's proxy would read them again from a file object: one more copy).
    """
    from nibabel.volumeutils import apply_read_scaling

    _, header, shape, affine, expected = _checked_header(path)
    buf = _read_all(path, expected)
    raw = np.ndarray(
        shape, dtype=header.get_data_dtype(), buffer=buf, offset=header.get_data_offset(), order="F"
    )
    slope, inter = header.get_slope_inter()
    dtype: type | None = np.float32
    if label:
        dtype = None if slope in (1.0, None) and inter in (0.0, None) else np.float64
    scl_slope = np.asanyarray(1.0 if slope is None else slope)
    scl_inter = np.asanyarray(0.0 if inter is None else inter)
    use_dtype = scl_slope.dtype if dtype is None else dtype
    if np.can_cast(scl_slope, use_dtype):
        scl_slope = scl_slope.astype(use_dtype)
    if np.can_cast(scl_inter, use_dtype):
        scl_inter = scl_inter.astype(use_dtype)
    # 0-d arrays, as nibabel's ArrayProxy passes them (its type hints say scalars)
    scaled = apply_read_scaling(raw, scl_slope, scl_inter)  # type: ignore[arg-type]
    if dtype is not None:
        scaled = np.asarray(scaled.astype(np.promote_types(scaled.dtype, dtype), copy=False), dtype)
    return scaled, affine


def read_header(path: str | Path) -> NiftiHeaderInfo:
    """Shape, affine and header of a NIfTI file (cheap: voxels are not decompressed).

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: the header fails a check (see the module docstring); voxel data are not
            checked here, :func:`read_image` and :func:`read_label` do that.
    """
    path = Path(path)
    _, header, shape, affine, _ = _checked_header(path)
    return NiftiHeaderInfo(path, shape, affine, header)


def orientation_known(path: str | Path) -> bool:
    """Whether a NIfTI header says how the voxels lie in the patient (qform or sform code > 0).

    With both codes 0 the file has no orientation (the NIfTI standard's Analyze fallback):
    nibabel still returns an affine, built from the voxel sizes, but it is a placeholder.
    """
    header = read_header(path).header
    return int(header["qform_code"]) > 0 or int(header["sform_code"]) > 0


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
        InputError: a corrupt, truncated or forged file (see the module docstring), NaN/Inf
            voxels, or an all-zero image; the message names the file and the fix.
    """
    path = Path(path)
    voxels, affine = _voxels(path, label=False)
    data = np.asarray(voxels, dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(
            f"{path}: {int(bad.sum())} NaN/Inf voxel(s); fix or mask them (e.g. set to 0) before use"
        )
    if not allow_empty and not np.any(data):
        raise InputError(
            f"{path}: every voxel is zero; the modality is empty: re-export it or leave it out"
        )
    return data, affine


def read_label(path: str | Path) -> tuple[NDArray[np.generic], NDArray[np.float64]]:
    """Read a label map's raw values (no scaling, file dtype) with its affine.

    Integer checks and the scheme conversion happen in :meth:`LabelScheme.encode`.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: a corrupt, truncated or forged file (see the module docstring).
    """
    return _voxels(Path(path), label=True)


def write_nifti(
    path: str | Path,
    data: NDArray[np.generic],
    affine: NDArray[np.float64],
    *,
    header: nib.Nifti1Header | None = None,
    dtype: type | None = None,
    slope: float = 1.0,
    orientation_known: bool = True,
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
        orientation_known: False writes qform and sform codes 0, so an output of an input
            without orientation does not claim one (:func:`orientation_known` reads it back).
    """
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(np.asarray(data), affine, header=hdr)
    img.set_data_dtype(dtype or np.asarray(data).dtype)
    if hdr is not None:
        sform_code = int(hdr["sform_code"]) or 1
        qform_code = int(hdr["qform_code"]) or 1
        img.set_sform(affine, code=sform_code)
        img.set_qform(affine, code=qform_code)
    if not orientation_known:
        img.set_sform(affine, code=0)
        img.set_qform(affine, code=0)
    img.header["scl_slope"] = slope
    img.header["scl_inter"] = 0.0
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
