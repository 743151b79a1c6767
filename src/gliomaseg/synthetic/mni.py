"""The ``mni`` template of :func:`~gliomaseg.synthetic.phantoms.make_case`: the MNI152 (2009)
brain that ``nilearn`` ships (no download) resampled onto the grid, and an irregular tumour
grown in the white matter of one hemisphere."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import voxel_spacing
from gliomaseg.core.geometry import bounding_box
from gliomaseg.synthetic.anatomy import (
    Anatomy,
    interp_axis,
    nested_labels,
    smooth_noise,
    top_fraction,
)

#: Level of the (peak-normalised) tumour field at the whole-tumour border of a single lobe.
_WT_LEVEL = 0.1


@dataclass(frozen=True)
class _Template:
    """MNI maps cropped to the brain: (3, I, J, K) float32 [mask, GM, WM] and geometry."""

    maps: NDArray[np.float32]
    origin_mm: NDArray[np.float64]
    spacing_mm: NDArray[np.float64]
    centre_mm: NDArray[np.float64]


@functools.cache
def mni_template() -> _Template:
    """Load nilearn's bundled 1 mm MNI152 maps once per process (read-only, no network)."""
    try:
        from nilearn import datasets
    except ImportError:  # pragma: no cover - nilearn is a declared dependency
        raise ValueError(
            "template='mni' needs nilearn (pip install nilearn); use template='phantom' instead"
        ) from None
    images = [
        datasets.load_mni152_brain_mask(resolution=1),
        datasets.load_mni152_gm_template(resolution=1),
        datasets.load_mni152_wm_template(resolution=1),
    ]
    maps = np.stack([np.asarray(img.get_fdata(), dtype=np.float32) for img in images])
    affine = np.asarray(images[0].affine, dtype=np.float64)
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("nilearn's MNI152 template is not axis-aligned; reinstall nilearn")
    brain = maps[0] > 0.5
    tight, box = bounding_box(brain), bounding_box(brain, margin=3)
    if tight is None or box is None:
        raise ValueError("nilearn's MNI152 brain mask is empty; reinstall nilearn")
    crop = np.ascontiguousarray(maps[(slice(None), *box)])
    crop.setflags(write=False)
    # Signed steps along the template's array axes (its affine is diagonal, checked above).
    spacing = np.asarray(voxel_spacing(affine)) * np.sign(np.diag(affine[:3, :3]))
    origin = affine[:3, 3] + spacing * np.array([b.start for b in box])
    bbox_centre = np.array([(b.start + b.stop - 1) / 2.0 for b in tight])
    centre = affine[:3, 3] + spacing * bbox_centre
    return _Template(maps=crop, origin_mm=origin, spacing_mm=spacing, centre_mm=centre)


def _mni_coords(
    shape: tuple[int, int, int], affine: NDArray[np.float64]
) -> list[NDArray[np.float64]]:
    """MNI mm coordinate of every index along each axis (grid centre -> MNI brain centre)."""
    tmpl = mni_template()
    centre_world = affine[:3, :3] @ ((np.array(shape) - 1) / 2.0) + affine[:3, 3]
    shift = tmpl.centre_mm - centre_world
    return [affine[a, a] * np.arange(shape[a]) + affine[a, 3] + shift[a] for a in range(3)]


def _mni_anatomy(shape: tuple[int, int, int], affine: NDArray[np.float64]) -> Anatomy:
    """Resample the MNI maps onto the grid (separable linear interpolation)."""
    tmpl = mni_template()
    maps: NDArray[np.float32] = tmpl.maps
    for axis, mm in enumerate(_mni_coords(shape, affine)):
        maps = interp_axis(maps, (mm - tmpl.origin_mm[axis]) / tmpl.spacing_mm[axis], axis + 1)
    brain = maps[0] > 0.5
    gm = np.where(brain, maps[1], 0.0)
    wm = np.where(brain, maps[2], 0.0)
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.where(brain, 1.0 - gm - wm, 0.0)
    return Anatomy(brain=brain, probs=np.stack([csf, gm, wm]).astype(np.float32))


def mni_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    affine: NDArray[np.float64],
    radius_mm: float | None,
) -> tuple[Anatomy, NDArray[np.uint8], NDArray[np.float64]]:
    """Anatomy, label map and tumour centre (voxel index) for the MNI template."""
    anatomy = _mni_anatomy(shape, affine)
    if not anatomy.brain.any():
        raise ValueError(
            f"the grid {shape} at spacing {list(voxel_spacing(affine))} mm holds no brain; "
            "use a larger shape or spacing"
        )
    step = np.asarray(voxel_spacing(affine))
    fov = np.array(shape) * step
    if radius_mm is None:
        radius_mm = min(float(rng.uniform(20.0, 30.0)), 0.35 * float(fov.min()))
    centre = _pick_centre(rng, anatomy, _mni_coords(shape, affine), step, radius_mm)
    label = _grow_tumour(rng, anatomy, centre, step, radius_mm)
    return anatomy, label, centre.astype(np.float64)


def _pick_centre(
    rng: np.random.Generator,
    anatomy: Anatomy,
    mni: list[NDArray[np.float64]],
    step: NDArray[np.float64],
    radius_mm: float,
) -> NDArray[np.intp]:
    """A voxel deep in the white matter of a random hemisphere (looser rules if none)."""
    shape = anatomy.brain.shape
    margin = [min(math.ceil(0.6 * radius_mm / step[a]), (shape[a] - 1) // 2) for a in range(3)]
    in_fov = [
        (np.arange(n) >= m) & (np.arange(n) < n - m) for n, m in zip(shape, margin, strict=True)
    ]
    side = 1.0 if rng.random() < 0.5 else -1.0
    x_ok = (side * mni[0] >= 12.0) & (side * mni[0] <= 45.0) & in_fov[0]
    y_ok = (mni[1] >= -75.0) & (mni[1] <= 40.0) & in_fov[1]
    z_ok = (mni[2] >= -5.0) & (mni[2] <= 45.0) & in_fov[2]
    fov = in_fov[0][:, None, None] & in_fov[1][None, :, None] & in_fov[2][None, None, :]
    box = x_ok[:, None, None] & y_ok[None, :, None] & z_ok[None, None, :]
    wm = anatomy.probs[2]
    for candidates in (box & (wm > 0.6), fov & (wm > 0.5), fov & anatomy.brain, anatomy.brain):
        flat = np.flatnonzero(candidates)
        if flat.size:
            return np.array(np.unravel_index(int(rng.choice(flat)), shape), dtype=np.intp)
    raise AssertionError("unreachable: the brain mask was checked to be non-empty")


def _box(
    centre: NDArray[np.intp], half: NDArray[np.intp], shape: tuple[int, ...]
) -> tuple[slice, ...]:
    return tuple(
        slice(max(int(c - h), 0), min(int(c + h) + 1, n))
        for c, h, n in zip(centre, half, shape, strict=True)
    )


def _lobe_field(
    rng: np.random.Generator,
    box: tuple[slice, ...],
    centre: NDArray[np.intp],
    step: NDArray[np.float64],
    radius_mm: float,
) -> NDArray[np.float32]:
    """Sum of random rotated Gaussian ellipsoids, peak-normalised to 1, on the box."""
    mm = [(np.arange(s.start, s.stop) - c) * d for s, c, d in zip(box, centre, step, strict=True)]
    pts = np.stack(np.meshgrid(*mm, indexing="ij"), axis=-1).astype(np.float32)
    field = np.zeros(pts.shape[:3], dtype=np.float32)
    level = -2.0 * math.log(_WT_LEVEL)
    for k in range(int(rng.integers(3, 6))):
        offset = np.zeros(3) if k == 0 else rng.normal(0.0, 0.3 * radius_mm, 3)
        radii = radius_mm * rng.uniform(0.55, 1.0, 3)
        rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        weight = 1.0 if k == 0 else float(rng.uniform(0.5, 0.9))
        local = (pts - offset.astype(np.float32)) @ rot.astype(np.float32)
        q = ((local / radii.astype(np.float32)) ** 2).sum(axis=-1)
        field += weight * np.exp(-0.5 * level * q)
    return field / max(float(field.max()), 1e-6)


def _grow_tumour(
    rng: np.random.Generator,
    anatomy: Anatomy,
    centre: NDArray[np.intp],
    step: NDArray[np.float64],
    radius_mm: float,
) -> NDArray[np.uint8]:
    """Irregular tumour: NCR inside an ET rim inside edema that spreads along white matter."""
    shape = anatomy.brain.shape
    half = np.ceil(2.2 * radius_mm / step).astype(np.intp)
    box = _box(centre, half, shape)
    field = _lobe_field(rng, box, centre, step, radius_mm)
    cell = 0.3 * radius_mm / float(step.min())
    core = field * np.exp(0.12 * smooth_noise(rng, field.shape, cell))
    csf, _, wm = anatomy.probs[:, box[0], box[1], box[2]]
    fingers = 0.25 * smooth_noise(rng, field.shape, cell) + 0.2 * smooth_noise(
        rng, field.shape, cell / 2
    )
    spread = field**0.6 * np.exp(fingers) * (0.5 + 0.5 * wm)
    brain = anatomy.brain[box] & (csf < 0.6)
    wt = brain & (spread > _WT_LEVEL)
    tc = top_fraction(core, wt, float(rng.uniform(0.25, 0.5)))
    ncr = top_fraction(core, tc, float(rng.uniform(0.3, 0.55)))
    local = nested_labels(ncr, tc, wt, brain, np.unravel_index(int(np.argmax(core)), core.shape))
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = local
    return label
