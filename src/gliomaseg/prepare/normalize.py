"""Array checks and intensity normalisation for brain MRI.

Conventions: an *image* is channels-first ``(C, X, Y, Z)``, one channel per modality, in the
canonical voxel order of :mod:`gliomaseg.core.geometry` (``Z`` may be 1 for 2D data); spatial
axes are always the *last* axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

# --------------------------------------------------------------------------- checks


def check_finite(image: NDArray[Any], *, source: str) -> None:
    """Raise if an array holds NaN or infinite values.

    Args:
        image: Array of any shape and numeric dtype (integer arrays always pass). An empty
            array passes.
        source: What the array is (file name, case id), named in the error message.

    Raises:
        ValueError: naming ``source`` and how many NaN / Inf values were found.
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "fc":
        return
    finite = np.isfinite(arr)
    if finite.all():
        return
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(arr.size - finite.sum()) - n_nan
    raise ValueError(
        f"{source}: image holds {n_nan} NaN and {n_inf} infinite values; the file is corrupt "
        "or was written with a broken converter: re-export it, or replace those voxels "
        "(e.g. np.nan_to_num) before preprocessing"
    )


def check_image(image: NDArray[Any], name: str = "image") -> NDArray[Any]:
    arr = np.asarray(image)
    if arr.ndim != 4:
        raise ValueError(
            f"{name} must be channels-first (C, X, Y, Z), got shape {arr.shape}; add a channel "
            "axis with image[None] for a single modality, and a Z axis of 1 for 2D data"
        )
    return arr


def check_spatial(arr: NDArray[Any], shape: tuple[int, ...], name: str) -> NDArray[Any]:
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise ValueError(
            f"{name} shape {arr.shape} does not match the image's spatial shape {shape}; "
            "both must be on the same (X, Y, Z) grid"
        )
    return arr


# --------------------------------------------------------------------------- normalisation


def brain_mask(image: NDArray[Any]) -> NDArray[np.bool_]:
    """Voxels where any channel is nonzero (skull-stripped data is exactly 0 outside the brain).

    Args:
        image: ``(C, X, Y, Z)`` array of any numeric dtype.

    Returns:
        bool array ``(X, Y, Z)``; all False when ``C == 0`` or the image is all zeros.
    """
    arr = check_image(image)
    return np.asarray(np.any(arr != 0, axis=0), dtype=bool)


def zscore(
    image: NDArray[Any], *, mask: NDArray[np.bool_] | None = None, eps: float = 1e-8
) -> NDArray[np.float32]:
    """Per-modality z-score over brain voxels; voxels outside the brain are set to 0.

    Statistics are computed in float64 separately for every channel over ``mask`` or, when no
    mask is given, over the voxels where *that* channel is nonzero. A channel with no brain
    voxels stays all zeros; a channel whose standard deviation is ``<= eps`` (constant inside
    the brain) only has its mean subtracted. The result never holds NaN for finite input
    (check input with :func:`check_finite`).

    Args:
        image: ``(C, X, Y, Z)`` intensities, any real dtype.
        mask: Optional bool ``(X, Y, Z)`` brain mask shared by all channels.
        eps: Standard deviations at or below this are treated as zero.

    Returns:
        float32 ``(C, X, Y, Z)``; an empty input gives an empty float32 array of the same shape.
    """
    arr = check_image(image)
    if mask is not None:
        mask = check_spatial(mask, arr.shape[1:], "mask").astype(bool, copy=False)
    out = np.zeros(arr.shape, dtype=np.float32)
    for c in range(arr.shape[0]):
        chan = arr[c]
        inside = mask if mask is not None else chan != 0
        values = chan[inside].astype(np.float64)
        if values.size == 0:
            continue
        mean = float(values.mean())
        std = float(values.std())
        scaled = values - mean if std <= eps else (values - mean) / std
        out[c][inside] = scaled.astype(np.float32)
    return out
