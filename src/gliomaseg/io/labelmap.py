"""Reading a label map: one policy for its shape, its values and its label scheme.

Every command that reads a segmentation (evaluate's reference and prediction, the case
report's mask and reference, the case readers of :mod:`gliomaseg.io.layouts`) goes through
here, so a file is understood the same way everywhere:

* **shape**: a 2D map becomes one slice ``(X, Y, 1)``; ``(X, Y, Z, 1)`` is squeezed to
  ``(X, Y, Z)``; any other 4D (or higher) map is refused;
* **values**: integers, or floats that hold integers (within ``1e-4``: float32 exports), which
  are rounded with ``np.rint``. NaN/Inf or fractional values (a probability map or an image
  passed as the label) are an error naming the file, never truncated;
* **scheme**: an explicit ``scheme`` wins outright; otherwise
  :func:`~gliomaseg.core.labels.guess_scheme` picks one from the values, preferring ``hint``
  (the layout's or the other file's scheme) when it explains them.

Errors are :class:`~gliomaseg.core.errors.InputError` naming the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.errors import InputError
from gliomaseg.core.geometry import to_canonical
from gliomaseg.core.labels import LabelScheme, get_scheme, guess_scheme
from gliomaseg.io import nifti

#: Largest distance from an integer a float label value may have (float32 exports of integer
#: labels sometimes hold 0.99999994); anything further is not a label map.
INTEGER_TOLERANCE = 1e-4


@dataclass(frozen=True)
class LabelMap:
    """A label map read from a file, as internal codes (0 background, 1 NCR, 2 ED, 3 ET).

    Attributes:
        codes: ``(X, Y, Z)`` uint8 internal codes in the file's own voxel order (a 2D file
            has ``Z == 1``).
        affine: 4x4 voxel -> scanner matrix of ``codes`` (the file's).
        scheme: The label scheme the file's values were read with.
        path: The file.
        source_shape: The array shape stored in the file (2D stays 2D; a trailing 1 kept).
    """

    codes: NDArray[np.uint8]
    affine: NDArray[np.float64]
    scheme: LabelScheme
    path: Path
    source_shape: tuple[int, ...]

    def canonical(self) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
        """``codes`` and ``affine`` reoriented to the canonical (RAS-closest) axis order."""
        codes, affine = to_canonical(self.codes, self.affine)
        return np.asarray(codes, dtype=np.uint8), affine


def integer_labels(raw: NDArray[Any], path: str | Path) -> NDArray[Any]:
    """``raw`` with float values rounded to the integers they hold (other dtypes unchanged).

    Raises:
        InputError: NaN/Inf, or a value further than :data:`INTEGER_TOLERANCE` from an integer.
    """
    arr = np.asarray(raw)
    if arr.dtype.kind != "f":
        return arr
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: label map contains NaN/Inf; re-export it as integer labels")
    rounded = np.rint(arr)
    off = np.abs(rounded - arr)
    if arr.size and float(off.max()) > INTEGER_TOLERANCE:
        example = float(arr.flat[int(np.argmax(off))])
        raise InputError(
            f"{path}: label map holds non-integer values (e.g. {example:.4g}); it looks like an "
            "image or a probability map, not a segmentation: check which file is the label"
        )
    return rounded


def label_values(raw: NDArray[Any]) -> set[int]:
    """The distinct values of an integer-valued label array (floats rounded with ``np.rint``)."""
    arr = np.asarray(raw)
    return {int(v) for v in np.unique(np.rint(arr) if arr.dtype.kind == "f" else arr)}


def choose_scheme(
    raw: NDArray[Any], path: str | Path, *, scheme: str | None = None, hint: str | None = None
) -> LabelScheme:
    """``scheme`` when given (it wins outright), else the scheme guessed from the values.

    Raises:
        InputError: an unknown scheme name, or values no known scheme explains.
    """
    try:
        if scheme:
            return get_scheme(scheme)
        return guess_scheme(label_values(raw), hint=hint)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def encode_labels(
    raw: NDArray[Any], path: str | Path, *, scheme: str | None = None, hint: str | None = None
) -> tuple[NDArray[np.uint8], LabelScheme]:
    """Internal codes of a raw label array of any shape, and the scheme used.

    The shape is left alone (callers that need a 3D grid use :func:`label_grid`); the value
    policy and the scheme precedence are those of the module docstring.

    Raises:
        InputError: non-integer or unknown values, or no scheme explains them; names ``path``.
    """
    arr = integer_labels(raw, path)
    chosen = choose_scheme(arr, path, scheme=scheme, hint=hint)
    try:
        return chosen.encode(arr, source=str(path)), chosen
    except ValueError as err:
        raise InputError(str(err)) from None


def label_grid(raw: NDArray[Any], path: str | Path) -> NDArray[Any]:
    """``raw`` as a 3D grid: 2D -> ``(X, Y, 1)``, ``(X, Y, Z, 1)`` -> ``(X, Y, Z)``.

    Raises:
        InputError: any other number of dimensions.
    """
    arr = np.asarray(raw)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        return arr[..., 0]
    if arr.ndim != 3:
        raise InputError(
            f"{path}: label map has shape {tuple(arr.shape)}; expected a 2D or 3D label map "
            "(X, Y) or (X, Y, Z): pass one segmentation volume, not a series"
        )
    return arr


def read_raw_label_map(path: str | Path) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """A label NIfTI's integer values on a 3D grid (file voxel order) and its affine.

    For callers that do not need a scheme (a binary comparison: any non-zero is tumour).

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: an unreadable file, a bad shape or non-integer values.
    """
    raw, affine = nifti.read_label(path)
    return integer_labels(label_grid(raw, path), path), affine


def read_label_map(
    path: str | Path, *, scheme: str | None = None, hint: str | None = None
) -> LabelMap:
    """Read a label NIfTI as internal codes on its own grid, with the scheme of its values.

    Args:
        path: A ``.nii``/``.nii.gz`` label map (2D, 3D or ``(X, Y, Z, 1)``).
        scheme: Name of the file's label scheme; wins outright when given.
        hint: Scheme preferred by the guess when it explains the values (the layout's, or the
            other side's in a comparison).

    Returns:
        The :class:`LabelMap`: ``(X, Y, Z)`` uint8 codes in the file's voxel order.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: an unreadable file, a bad shape, non-integer values or values no scheme
            explains; the message names the file and the fix.
    """
    raw, affine = nifti.read_label(path)
    source_shape = tuple(int(s) for s in raw.shape)
    codes, chosen = encode_labels(label_grid(raw, path), path, scheme=scheme, hint=hint)
    return LabelMap(
        codes=np.asarray(codes, dtype=np.uint8),
        affine=np.asarray(affine, dtype=np.float64),
        scheme=chosen,
        path=Path(path),
        source_shape=source_shape,
    )


__all__ = [
    "INTEGER_TOLERANCE",
    "LabelMap",
    "choose_scheme",
    "encode_labels",
    "integer_labels",
    "label_grid",
    "label_values",
    "read_label_map",
    "read_raw_label_map",
]
