"""Array preprocessing for brain MRI: normalisation, cropping, padding, resizing, splits.

Conventions used throughout:

* an *image* is channels-first ``(C, X, Y, Z)`` float32, one channel per modality, in the
  canonical voxel order of :mod:`gliomaseg.core.geometry` (``Z`` may be 1 for 2D data);
* a *label* is ``(X, Y, Z)`` uint8 holding internal codes (see :mod:`gliomaseg.core.labels`);
* spatial axes are always the *last* axes, so functions that take ``(..., X, Y, Z)`` work
  the same on a label, an image, or a batch of network outputs.

Every geometric step has an exact inverse driven by a small frozen record (:class:`CropInfo`,
:class:`PadInfo`) that round-trips through JSON, so a prediction made on the cropped, padded
grid lands back on the input's own voxels. Splits are made per *patient*, never per slice,
and are deterministic for a given seed whatever the order of the input list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

T = TypeVar("T")

PAD_MODES = ("constant", "edge", "reflect", "symmetric")


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


def _check_image(image: NDArray[Any], name: str = "image") -> NDArray[Any]:
    arr = np.asarray(image)
    if arr.ndim != 4:
        raise ValueError(
            f"{name} must be channels-first (C, X, Y, Z), got shape {arr.shape}; add a channel "
            "axis with image[None] for a single modality, and a Z axis of 1 for 2D data"
        )
    return arr


def _check_spatial(arr: NDArray[Any], shape: tuple[int, ...], name: str) -> NDArray[Any]:
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
    arr = _check_image(image)
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
    arr = _check_image(image)
    if mask is not None:
        mask = _check_spatial(mask, arr.shape[1:], "mask").astype(bool, copy=False)
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


# --------------------------------------------------------------------------- cropping


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


def bounding_box(mask: NDArray[Any], *, margin: int = 0) -> tuple[slice, slice, slice]:
    """Tightest box around the nonzero voxels of a 3D mask, grown by ``margin`` voxels.

    Args:
        mask: ``(X, Y, Z)`` array; nonzero means inside.
        margin: Voxels added on every side (clipped at the volume border), ``>= 0``.

    Returns:
        One slice per spatial axis. An empty mask (no nonzero voxel) gives the whole volume,
        never an error, so cases with nothing to crop pass through unchanged.
    """
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise ValueError(f"mask must be 3D (X, Y, Z), got shape {arr.shape}")
    if isinstance(margin, bool) or not isinstance(margin, int | np.integer) or margin < 0:
        raise ValueError(f"margin must be an int >= 0 (voxels), got {margin!r}")
    out: list[slice] = []
    for axis, n in enumerate(arr.shape):
        others = tuple(i for i in range(3) if i != axis)
        hits = np.flatnonzero(np.any(arr != 0, axis=others))
        if hits.size == 0:
            return slice(0, arr.shape[0]), slice(0, arr.shape[1]), slice(0, arr.shape[2])
        out.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, n)))
    return out[0], out[1], out[2]


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
    arr = _check_image(image)
    spatial = arr.shape[1:]
    mask = brain_mask(arr) if mask is None else _check_spatial(mask, spatial, "mask")
    box = bounding_box(mask, margin=margin)
    info = CropInfo(
        shape=(spatial[0], spatial[1], spatial[2]),
        start=(box[0].start, box[1].start, box[2].start),
        stop=(box[0].stop, box[1].stop, box[2].stop),
    )
    cropped = np.ascontiguousarray(arr[(slice(None), *box)])
    if label is None:
        return cropped, None, info
    lab = _check_spatial(label, spatial, "label")
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


# --------------------------------------------------------------------------- padding


@dataclass(frozen=True)
class PadInfo:
    """Padding added by :func:`pad_to_multiple`, enough to undo it exactly.

    Attributes:
        axes: Padded axes as negative indices (counted from the end, so the record applies to
            arrays with a different number of leading axes, e.g. a label vs its image).
        before: Voxels added before the data on each axis in ``axes``.
        after: Voxels added after the data on each axis in ``axes``.
    """

    axes: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.axes) == len(self.before) == len(self.after):
            raise ValueError("PadInfo: axes, before and after must have the same length")
        if any(a >= 0 for a in self.axes) or len(set(self.axes)) != len(self.axes):
            raise ValueError(f"PadInfo.axes must be distinct negative indices, got {self.axes}")
        if any(p < 0 for p in self.before + self.after):
            raise ValueError("PadInfo: padding amounts must be >= 0")

    def to_dict(self) -> dict[str, list[int]]:
        """Plain dict of int lists (JSON-serialisable)."""
        return {"axes": list(self.axes), "before": list(self.before), "after": list(self.after)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[int]]) -> PadInfo:
        """Inverse of :meth:`to_dict`; raises ValueError on missing keys or bad values."""
        try:
            axes, before, after = (
                tuple(int(v) for v in data[k]) for k in ("axes", "before", "after")
            )
        except (KeyError, TypeError) as err:
            raise ValueError(
                "PadInfo.from_dict needs keys 'axes', 'before', 'after' holding int lists "
                f"(as written by to_dict), got {dict(data)!r}"
            ) from err
        return cls(axes=axes, before=before, after=after)


def _negative_axes(axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    out = []
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"axis {ax} is out of range for an array with {ndim} dimensions")
        out.append(ax - ndim if ax >= 0 else ax)
    if len(set(out)) != len(out):
        raise ValueError(f"axes {tuple(axes)} name the same axis twice")
    return tuple(out)


def _multiples(multiple: int | Sequence[int], count: int) -> list[int]:
    values: list[object] = list(multiple) if isinstance(multiple, Sequence) else [multiple] * count
    ints = [int(m) for m in values if isinstance(m, int | np.integer) and not isinstance(m, bool)]
    if len(ints) != len(values) or len(ints) != count or min(ints, default=1) < 1:
        raise ValueError(
            f"multiple must be a positive int, or one per padded axis ({count}), got {multiple!r}"
        )
    return ints


def pad_to_multiple(
    array: NDArray[Any],
    multiple: int | Sequence[int],
    *,
    axes: Sequence[int] = (-3, -2, -1),
    mode: str = "constant",
    value: float = 0,
) -> tuple[NDArray[Any], PadInfo]:
    """Pad chosen axes up to the next multiple of ``multiple``, centring the data.

    On an axis of size ``n`` the target is ``ceil(n / m) * m``; the ``t = target - n`` new
    voxels are split ``t // 2`` before and ``t - t // 2`` after. Axes already a multiple (and
    axes of size 0) are left alone, so padding an already-padded array is a no-op.

    Args:
        array: Any array; by default its last three (spatial) axes are padded.
        multiple: Positive int for all axes, or one per entry of ``axes`` (e.g. 16 or 32 for a
            U-Net with 4 or 5 poolings).
        axes: Axes to pad (negative or positive indices).
        mode: ``"constant"`` (fill with ``value``), ``"edge"``, ``"reflect"`` or
            ``"symmetric"``, as in :func:`numpy.pad`.
        value: Fill value for ``mode="constant"``.

    Returns:
        ``(padded, info)``: padded array of the same dtype, and the record :func:`unpad` uses.
    """
    arr = np.asarray(array)
    neg = _negative_axes(axes, arr.ndim)
    mults = _multiples(multiple, len(neg))
    if mode not in PAD_MODES:
        raise ValueError(f"mode must be one of {PAD_MODES}, got {mode!r}")
    widths = [(0, 0)] * arr.ndim
    before, after = [], []
    for ax, m in zip(neg, mults, strict=True):
        n = arr.shape[ax]
        total = -n % m
        widths[ax] = (total // 2, total - total // 2)
        before.append(total // 2)
        after.append(total - total // 2)
    info = PadInfo(axes=neg, before=tuple(before), after=tuple(after))
    if not any(before + after):
        return arr.copy(), info
    if mode == "constant":
        return np.pad(arr, widths, mode="constant", constant_values=value), info
    return np.pad(arr, widths, mode=mode), info  # type: ignore[call-overload]


def unpad(array: NDArray[Any], info: PadInfo) -> NDArray[Any]:
    """Exact inverse of :func:`pad_to_multiple`: cut the padding off again.

    Args:
        array: Array with the padded axes of ``info`` (counted from the end); leading axes
            may differ from the padded array's (e.g. class channels of a network output).
        info: Record returned by :func:`pad_to_multiple`.

    Returns:
        A contiguous copy with the padding removed, same dtype.
    """
    arr = np.asarray(array)
    index: list[slice] = [slice(None)] * arr.ndim
    for ax, b, a in zip(info.axes, info.before, info.after, strict=True):
        if -ax > arr.ndim or arr.shape[ax] < b + a:
            raise ValueError(
                f"unpad: array of shape {arr.shape} cannot lose {b}+{a} voxels on axis {ax}; "
                "pass the array produced on the padded grid"
            )
        index[ax] = slice(b, arr.shape[ax] - a)
    return np.ascontiguousarray(arr[tuple(index)])


# --------------------------------------------------------------------------- resizing


def resize(array: NDArray[Any], shape: Sequence[int], *, order: int) -> NDArray[Any]:
    """Resample the last ``len(shape)`` (2 or 3) axes to exactly ``shape``.

    Like :func:`scipy.ndimage.zoom` with ``grid_mode=True`` (voxel centres are aligned, the
    field of view is kept), but the output shape is exactly ``shape`` with no rounding
    surprises. Borders are extended with the nearest voxel. Leading axes (channels, batch)
    are resampled independently.

    Args:
        array: ``(..., X, Y[, Z])`` array with nonzero spatial size.
        shape: Target spatial shape, 2 or 3 positive ints.
        order: Spline order 0-5. ``0`` (nearest) for labels: keeps dtype and only ever
            outputs values present in the input. ``1`` (linear) for images. Orders ``>= 1``
            return float32.

    Returns:
        ``array.shape[:-len(shape)] + tuple(shape)``.
    """
    arr = np.asarray(array)
    target = tuple(int(s) for s in shape)
    nsp = len(target)
    if nsp not in (2, 3) or any(s < 1 for s in target) or arr.ndim < nsp:
        raise ValueError(
            f"shape must be 2 or 3 positive ints no longer than the array's {arr.ndim} axes, "
            f"got {tuple(shape)}"
        )
    if isinstance(order, bool) or order not in range(6):
        raise ValueError(f"order must be an int 0-5 (0 for labels, 1 for images), got {order!r}")
    src = arr.shape[-nsp:]
    if 0 in src:
        raise ValueError(f"cannot resize an array with empty spatial shape {src}")
    dtype = arr.dtype if order == 0 else np.dtype(np.float32)
    work = np.dtype(np.uint8) if dtype == np.bool_ else dtype  # scipy cannot write bool
    out = np.empty(arr.shape[:-nsp] + target, dtype=dtype)
    scale = np.array(src, dtype=np.float64) / np.array(target, dtype=np.float64)
    offset = 0.5 * scale - 0.5  # align voxel centres (grid_mode=True)
    flat_in = arr.reshape((-1, *src))
    flat_out = out.reshape((-1, *target))
    for i in range(flat_in.shape[0]):
        flat_out[i] = ndimage.affine_transform(
            flat_in[i].astype(work, copy=False),
            scale,
            offset=offset,
            output_shape=target,
            order=order,
            mode="nearest",
        )
    return out


def resize_image(image: NDArray[Any], shape: Sequence[int]) -> NDArray[np.float32]:
    """Linear resize of ``(C, X, Y, Z)`` (or ``(..., X, Y)``) intensities; returns float32."""
    return resize(image, shape, order=1)


def resize_label(label: NDArray[Any], shape: Sequence[int]) -> NDArray[Any]:
    """Nearest-neighbour resize of a label map; dtype and the set of codes are preserved."""
    return resize(label, shape, order=0)


# --------------------------------------------------------------------------- slice filtering


def tumour_slices(label: NDArray[Any], *, min_pixels: int = 1, axis: int = -1) -> NDArray[np.int64]:
    """Indices of slices along ``axis`` holding at least ``min_pixels`` tumour voxels.

    The threshold is inclusive: a slice is kept when its count of nonzero label voxels is
    ``>= min_pixels``. Published 2D pipelines that keep slices with *strictly more than* 50
    tumour pixels correspond to ``min_pixels=51``::

        >>> lab = np.zeros((8, 8, 3), np.uint8); lab[:, :, 1] = 1; lab[:7, :7, 2] = 1
        >>> tumour_slices(lab, min_pixels=51)  # 64 and 49 tumour pixels
        array([1])

    Args:
        label: Label array of any shape with ``ndim >= 1``; nonzero means tumour.
        min_pixels: Minimum count (inclusive), ``>= 0``; 0 keeps every slice.
        axis: Slice axis (default the last, ``Z``).

    Returns:
        Sorted int64 indices; empty when no slice qualifies or the axis has size 0.
    """
    arr = np.asarray(label)
    if arr.ndim < 1 or not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis {axis} is out of range for a label of shape {arr.shape}")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int | np.integer):
        raise ValueError(f"min_pixels must be an int, got {min_pixels!r}")
    if min_pixels < 0:
        raise ValueError(f"min_pixels must be >= 0, got {min_pixels}")
    moved = np.moveaxis(arr != 0, axis, 0)
    counts = moved.reshape(moved.shape[0], -1).sum(axis=1)
    return np.flatnonzero(counts >= min_pixels).astype(np.int64)


# --------------------------------------------------------------------------- patient splits


def lgg_institution(patient_id: str) -> str:
    """Tissue-source-site code of a TCGA patient id: ``TCGA_CS_4941_19960909`` -> ``CS``.

    Underscores (the LGG segmentation dataset's folder names) and dashes (TCGA barcodes,
    ``TCGA-CS-4941``) are both accepted.

    Raises:
        ValueError: when the id does not look like ``TCGA_<site>_<patient>...``.
    """
    parts = re.split(r"[_-]", str(patient_id))
    if len(parts) < 3 or parts[0].upper() != "TCGA" or not parts[1] or not parts[2]:
        raise ValueError(
            f"{patient_id!r} is not a TCGA patient id; expected 'TCGA_<site>_<patient>' "
            "(e.g. TCGA_CS_4941): pass strata explicitly for other datasets"
        )
    return parts[1]


def _unique_patients(patients: Sequence[str]) -> list[str]:
    if isinstance(patients, str):
        raise ValueError("patients must be a sequence of ids, not one string")
    ids = sorted({str(p) for p in patients})
    if not ids:
        raise ValueError("patients is empty; need at least one patient id to split")
    return ids


def _shuffled_strata(
    ids: list[str], strata: Mapping[str, str] | None, rng: np.random.Generator
) -> list[list[str]]:
    """Patients grouped by stratum (groups in sorted key order), each group shuffled."""
    if strata is None:
        groups = {"": ids}
    else:
        missing = [p for p in ids if p not in strata]
        if missing:
            raise ValueError(
                f"strata has no entry for {len(missing)} patient(s), e.g. {missing[:3]}; "
                "give every patient a stratum key (or pass strata=None)"
            )
        groups = {}
        for p in ids:
            groups.setdefault(str(strata[p]), []).append(p)
    return [[groups[key][i] for i in rng.permutation(len(groups[key]))] for key in sorted(groups)]


def _make_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def kfold_patients(
    patients: Sequence[str],
    k: int,
    *,
    seed: int | np.random.Generator = 0,
    strata: Mapping[str, str] | None = None,
) -> list[tuple[list[str], list[str]]]:
    """Deterministic patient-level k-fold split, optionally stratified.

    Ids are de-duplicated and sorted first (one id per slice is fine), so the result depends
    only on the set of patients and the seed. Each stratum (e.g. LGG institution from
    :func:`lgg_institution`) is shuffled and dealt round-robin over the folds, the dealing
    position carrying over from one stratum to the next, so fold sizes differ by at most one
    and every stratum is spread as evenly as possible.

    Args:
        patients: Patient ids, duplicates allowed.
        k: Number of folds, ``2 <= k <= number of distinct patients``.
        seed: Seed (or a generator, advanced in place) for the shuffle.
        strata: Optional patient id -> stratum key; must cover every patient.

    Returns:
        ``k`` pairs ``(train_ids, val_ids)``, each list sorted. Every patient is in exactly
        one validation fold and never in train and val of the same fold.
    """
    ids = _unique_patients(patients)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= len(ids):
        raise ValueError(
            f"k must be an int with 2 <= k <= number of patients ({len(ids)}), got {k!r}; "
            "use fewer folds or more patients"
        )
    groups = _shuffled_strata(ids, strata, _make_rng(seed))
    fold_of: dict[str, int] = {}
    position = 0
    for group in groups:
        for p in group:
            fold_of[p] = position % k
            position += 1
    folds = []
    for f in range(k):
        val = sorted(p for p in ids if fold_of[p] == f)
        train = sorted(p for p in ids if fold_of[p] != f)
        folds.append((train, val))
    return folds


def train_val_split(
    patients: Sequence[str],
    *,
    val_fraction: float = 0.2,
    seed: int | np.random.Generator = 0,
    strata: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Deterministic patient-level train/validation split, optionally stratified.

    The validation set has ``round(val_fraction * n)`` patients (at least 1, at most
    ``n - 1``). With ``strata``, that number is shared among strata in proportion to their
    size (largest-remainder rounding, ties to the sorted stratum key).

    Args:
        patients: Patient ids, duplicates allowed; at least 2 distinct.
        val_fraction: Fraction of patients for validation, strictly between 0 and 1.
        seed: Seed (or a generator, advanced in place) for the shuffle.
        strata: Optional patient id -> stratum key; must cover every patient.

    Returns:
        ``(train_ids, val_ids)``, sorted and disjoint.
    """
    ids = _unique_patients(patients)
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    if len(ids) < 2:
        raise ValueError(f"need at least 2 distinct patients to split, got {len(ids)}")
    n_val = min(max(round(val_fraction * len(ids)), 1), len(ids) - 1)
    groups = _shuffled_strata(ids, strata, _make_rng(seed))
    quotas = [val_fraction * len(g) for g in groups]
    take = [int(q) for q in quotas]
    by_remainder = sorted(range(len(groups)), key=lambda i: (-(quotas[i] - take[i]), i))
    for i in by_remainder[: n_val - sum(take)]:
        take[i] += 1
    val = sorted(p for g, t in zip(groups, take, strict=True) for p in g[:t])
    chosen = set(val)
    return sorted(p for p in ids if p not in chosen), val


def split_items_by_patient(
    items: Sequence[T],
    patient_of: Callable[[T], str],
    folds: Sequence[tuple[Sequence[str], Sequence[str]]],
) -> list[tuple[list[T], list[T]]]:
    """Map slice- or case-level items onto patient folds, so no patient leaks across a split.

    Args:
        items: Anything (slice records, file paths...), kept in input order.
        patient_of: Returns the patient id of an item.
        folds: ``(train_ids, val_ids)`` pairs from :func:`kfold_patients`, or
            ``[train_val_split(...)]``.

    Returns:
        One ``(train_items, val_items)`` pair per fold; empty lists for empty ``items``.

    Raises:
        ValueError: if a fold has a patient in both train and val, or an item's patient is in
            neither.
    """
    out: list[tuple[list[T], list[T]]] = []
    for f, (train_ids, val_ids) in enumerate(folds):
        train_set, val_set = set(train_ids), set(val_ids)
        both = sorted(train_set & val_set)
        if both:
            raise ValueError(f"fold {f}: patients {both[:3]} are in both train and val")
        train: list[T] = []
        val: list[T] = []
        for item in items:
            pid = patient_of(item)
            if pid in val_set:
                val.append(item)
            elif pid in train_set:
                train.append(item)
            else:
                raise ValueError(
                    f"fold {f}: item of patient {pid!r} is in neither train nor val; "
                    "build the folds from the same patient list as the items"
                )
        out.append((train, val))
    return out
