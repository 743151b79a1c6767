"""Building blocks shared by the synthetic templates: healthy anatomy, smooth random fields,
and nested tumour compartments (NCR inside ET inside edema)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.labels import ED, ET, NCR


@dataclass
class Anatomy:
    """Healthy tissue on the output grid: bool brain mask and (3, X, Y, Z) CSF/GM/WM probs."""

    brain: NDArray[np.bool_]
    probs: NDArray[np.float32]


def interp_axis(
    array: NDArray[np.float32], coords: NDArray[np.float64], axis: int
) -> NDArray[np.float32]:
    """Linear interpolation of ``array`` along one axis at fractional ``coords`` (0 outside)."""
    n = array.shape[axis]
    i0 = np.floor(coords).astype(np.intp)
    inside = (coords >= 0) & (coords <= n - 1)
    bshape = [1] * array.ndim
    bshape[axis] = -1
    w = np.where(inside, coords - i0, 0.0).astype(np.float32).reshape(bshape)
    keep = inside.astype(np.float32).reshape(bshape)
    lo = np.take(array, np.clip(i0, 0, n - 1), axis=axis)
    hi = np.take(array, np.clip(i0 + 1, 0, n - 1), axis=axis)
    return ((lo + (hi - lo) * w) * keep).astype(np.float32, copy=False)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], cell: float
) -> NDArray[np.float32]:
    """Unit-variance smooth random field on ``shape`` with correlation length ~``cell`` voxels."""
    cell = max(cell, 1.0)
    coarse_shape = tuple(math.ceil(n / cell) + 3 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 0.7)
    for axis, n in enumerate(shape):
        field = interp_axis(field, np.arange(n) / cell + 1.0, axis)
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def top_fraction(
    values: NDArray[np.float32], within: NDArray[np.bool_], fraction: float
) -> NDArray[np.bool_]:
    """The ``fraction`` of ``within`` voxels with the highest ``values`` (a nested blob)."""
    if not within.any():
        return within
    threshold = np.quantile(values[within], 1.0 - fraction)
    return within & (values >= threshold)


def nested_labels(
    ncr: NDArray[np.bool_],
    tc: NDArray[np.bool_],
    wt: NDArray[np.bool_],
    allowed: NDArray[np.bool_],
    peak: tuple[np.intp, ...],
) -> NDArray[np.uint8]:
    """Combine nested masks into labels: NCR wrapped in ET, the core wrapped in edema.

    Each compartment is grown by one voxel (within ``allowed``) around the one it encloses,
    so the nesting holds on coarse grids too; an empty NCR starts at ``peak``.
    """
    if not ncr.any():
        ncr = np.zeros_like(ncr)
        ncr[peak] = True
    tc = tc | ncr | (ndimage.binary_dilation(ncr) & allowed)
    wt = wt | tc | (ndimage.binary_dilation(tc) & allowed)
    label = np.zeros(ncr.shape, dtype=np.uint8)
    label[wt] = ED
    label[tc] = ET
    label[ncr] = NCR
    return label
