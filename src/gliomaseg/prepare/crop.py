"""Cropping to the brain and its exact inverse.

An *image* is channels-first ``(C, X, Y, Z)``; a *label* is ``(X, Y, Z)`` on the same grid.
The crop is recorded in a small frozen :class:`CropInfo` that round-trips through JSON, so a
prediction made on the cropped grid lands back on the input's own voxels (:func:`uncrop`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.geometry import bounding_box
from gliomaseg.prepare.normalize import brain_mask, check_image, check_spatial


@dataclass(frozen=True)
class CropInfo:
    """Where a crop was taken, enough to undo it exactly.

    Attributes:
        shape: Original spatial shape ``(X, Y, Z)`` in voxels.
        start: First kept index along each spatial axis.
        stop: One past the last kept index along each spatial axis.
    """

    shape: tuple[int, int, int]
    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    def __post_init__(self) -> None:
        for name in ("shape", "start", "stop"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"CropInfo.{name} must have 3 entries (X, Y, Z)")
        for n, a, b in zip(self.shape, self.start, self.stop, strict=True):
            if not 0 <= a <= b <= n:
                raise ValueError(
                    f"CropInfo: crop {a}:{b} does not fit in an axis of {n} voxels; "
                    "need 0 <= start <= stop <= size"
                )

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """The crop as ``(slice, slice, slice)`` over the spatial axes."""
        a, b = self.start, self.stop
        return slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2], b[2])

    @property
    def cropped_shape(self) -> tuple[int, int, int]:
        """Spatial shape of the cropped array."""
        a, b = self.start, self.stop
        return b[0] - a[0], b[1] - a[1], b[2] - a[2]

    def to_dict(self) -> dict[str, list[int]]:
        """Plain dict of int lists (JSON-serialisable)."""
        return {"shape": list(self.shape), "start": list(self.start), "stop": list(self.stop)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[int]]) -> CropInfo:
        """Inverse of :meth:`to_dict`; raises ValueError on missing keys or bad values."""
        try:
            shape, start, stop = (_int3(data[k]) for k in ("shape", "start", "stop"))
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"CropInfo.from_dict needs keys 'shape', 'start', 'stop' holding 3 ints each "
                f"(as written by to_dict), got {dict(data)!r}"
            ) from err
        return cls(shape=shape, start=start, stop=stop)


def _int3(values: Sequence[int]) -> tuple[int, int, int]:
    if len(values) != 3:
        raise TypeError("need 3 values")
    return int(values[0]), int(values[1]), int(values[2])


def crop_to_brain(
    image: NDArray[Any],
    label: NDArray[Any] | None = None,
    *,
    mask: NDArray[Any] | None = None,
    margin: int = 0,
) -> tuple[NDArray[Any], NDArray[Any] | None, CropInfo]:
    """Crop an image (and its label) to the bounding box of the brain.

    Args:
        image: ``(C, X, Y, Z)`` array.
        label: Optional ``(X, Y, Z)`` array on the same grid, cropped identically.
        mask: Optional ``(X, Y, Z)`` brain mask; defaults to :func:`brain_mask` of ``image``.
        margin: Voxels of background kept around the box on every side, ``>= 0``.

    Returns:
        ``(cropped_image, cropped_label_or_None, info)``: contiguous copies of shape
        ``(C, x, y, z)`` / ``(x, y, z)``, dtypes unchanged; ``info`` undoes the crop with
        :func:`uncrop`. An empty mask (all-zero image) keeps the whole volume.
    """
    arr = check_image(image)
    spatial = arr.shape[1:]
    mask = brain_mask(arr) if mask is None else check_spatial(mask, spatial, "mask")
    # An empty mask (all-zero image) keeps the whole volume: nothing to crop is not an error.
    box = bounding_box(mask, margin=margin) or tuple(slice(0, n) for n in spatial)
    info = CropInfo(
        shape=(spatial[0], spatial[1], spatial[2]),
        start=(box[0].start, box[1].start, box[2].start),
        stop=(box[0].stop, box[1].stop, box[2].stop),
    )
    cropped = np.ascontiguousarray(arr[(slice(None), *box)])
    if label is None:
        return cropped, None, info
    lab = check_spatial(label, spatial, "label")
    return cropped, np.ascontiguousarray(lab[box]), info


def uncrop(array: NDArray[Any], info: CropInfo, *, fill: float = 0) -> NDArray[Any]:
    """Put a cropped array back on the original grid: exact inverse of the crop.

    Args:
        array: ``(..., x, y, z)`` with ``(x, y, z) == info.cropped_shape``; any number of
            leading axes (channels, batch) and any dtype.
        info: Record returned by :func:`crop_to_brain`.
        fill: Value written outside the crop box.

    Returns:
        ``(..., X, Y, Z)`` array with ``(X, Y, Z) == info.shape``, same dtype as ``array``.
    """
    arr = np.asarray(array)
    if arr.ndim < 3 or arr.shape[-3:] != info.cropped_shape:
        raise ValueError(
            f"uncrop: array shape {arr.shape} must end with the cropped spatial shape "
            f"{info.cropped_shape}; pass the array produced on the cropped grid"
        )
    out = np.full(arr.shape[:-3] + info.shape, fill, dtype=arr.dtype)
    out[(..., *info.slices)] = arr
    return out
