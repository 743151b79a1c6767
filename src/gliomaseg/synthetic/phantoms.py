"""Synthetic glioma cases that look like BraTS data, for tests, demos and smoke runs.

Two templates:

``mni``
    The brain of the MNI152 (2009) template that ``nilearn`` ships with its package (no
    download). Its grey/white-matter probability maps and brain mask are resampled onto the
    requested grid; CSF is the rest of the brain mask. Four modalities are synthesised from the
    tissue probabilities (T1: WM > GM > CSF; T2: CSF > GM > WM; FLAIR: GM > WM, CSF dark;
    T1ce like T1), then a tumour (necrotic core inside an enhancing rim inside edema) is grown
    in the white matter of one hemisphere and changes the intensities the way gliomas do.
``phantom``
    An ellipsoid "brain" (GM shell, WM, two ventricles) with nested spheres for the tumour.
    Needs no template; a (32, 32, 32) case builds in a few milliseconds.

Geometry of every case: the arrays are in the *file* voxel order and ``affine`` maps voxel
indices to scanner millimetres (nibabel convention, world axes RAS+: +x = patient Right,
+y = Anterior, +z = Superior). The affine is diagonal: ``spacing`` on the diagonal, negated on
the flipped axes (default: axis 0, so the orientation code is ``LAS``; :func:`make_brats_like`
flips 0 and 1, giving BraTS' ``LPS``), with a non-zero origin. Anatomy is placed in world
space, so array order never decides laterality: the tumour's hemisphere is recorded in
:attr:`SyntheticCase.hemisphere` and its centre in world mm in
:attr:`SyntheticCase.tumour_centre_mm`.

Everything random comes from the ``rng`` argument: the same seed gives the same case.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.case import MODALITIES
from gliomaseg.core.labels import ED, ET, NCR

TEMPLATES: tuple[str, ...] = ("mni", "phantom")
#: BraTS grid: 240 x 240 x 155 voxels of 1 mm.
BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
#: The affine of real BraTS files (LPS voxel order, origin at (0, 239, 0)).
BRATS_AFFINE: NDArray[np.float64] = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
PHANTOM_SHAPE: tuple[int, int, int] = (32, 32, 32)
#: World position (mm) of the grid centre when no origin is given: off-centre in y and z so
#: that a reader which drops the origin is caught; x stays 0 so the midline is at x = 0.
DEFAULT_CENTRE_MM: tuple[float, float, float] = (0.0, -18.0, 6.0)

#: Mean intensity of healthy tissue per modality, for (CSF, GM, WM).
TISSUE_MEANS: dict[str, tuple[float, float, float]] = {
    "flair": (110.0, 560.0, 430.0),
    "t1": (240.0, 540.0, 760.0),
    "t1ce": (260.0, 560.0, 740.0),
    "t2": (930.0, 560.0, 380.0),
}
#: Mean intensity of tumour compartments per modality, for (NCR, ED, ET).
TUMOUR_MEANS: dict[str, tuple[float, float, float]] = {
    "flair": (380.0, 860.0, 700.0),
    "t1": (250.0, 480.0, 470.0),
    "t1ce": (230.0, 500.0, 980.0),
    "t2": (900.0, 820.0, 680.0),
}
_TUMOUR_CODES: tuple[int, int, int] = (NCR, ED, ET)
#: Level of the (peak-normalised) tumour field at the whole-tumour border of a single lobe.
_WT_LEVEL = 0.1


@dataclass
class SyntheticCase:
    """One synthetic subject in file voxel order.

    Attributes:
        case_id: Identifier used in file names.
        images: Modality name (``flair``, ``t1``, ``t1ce``, ``t2``) -> float32 (X, Y, Z) array,
            arbitrary scanner-like units (about 0..1000), exactly 0 outside the brain.
        label: (X, Y, Z) uint8 internal codes: 0 background, 1 NCR/NET, 2 ED, 3 ET.
        affine: 4x4 float64 voxel -> world (RAS+ mm) matrix of the arrays.
        hemisphere: ``"left"`` or ``"right"``: the patient side holding the tumour centre.
        tumour_centre_mm: World (x, y, z) mm of the tumour centre.
        template: ``"mni"`` or ``"phantom"``.
    """

    case_id: str
    images: dict[str, NDArray[np.float32]]
    label: NDArray[np.uint8]
    affine: NDArray[np.float64]
    hemisphere: str = ""
    tumour_centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    template: str = "phantom"

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (X, Y, Z) of the arrays."""
        x, y, z = self.label.shape
        return int(x), int(y), int(z)

    def stack(self, names: Sequence[str] = MODALITIES) -> NDArray[np.float32]:
        """Images as one (C, X, Y, Z) float32 array, channels in ``names`` order."""
        return np.stack([self.images[n] for n in names]).astype(np.float32, copy=False)


@dataclass
class _Anatomy:
    """Healthy tissue on the output grid: bool brain mask and (3, X, Y, Z) CSF/GM/WM probs."""

    brain: NDArray[np.bool_]
    probs: NDArray[np.float32]


def make_case(
    *,
    rng: np.random.Generator,
    case_id: str = "synthetic_000",
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 2.0),
    template: str = "mni",
    tumour_radius_mm: float | None = None,
    flip_axis: int | Sequence[int] | None = 0,
    origin: Sequence[float] | None = None,
    noise: float = 0.02,
    bias: float = 0.12,
) -> SyntheticCase:
    """Build a synthetic glioma case.

    Args:
        rng: Source of all randomness (same seed -> identical case).
        case_id: Identifier stored on the case.
        shape: Grid (X, Y, Z) in voxels. Default: (240, 240, 155) for ``mni``, (32, 32, 32) for
            ``phantom``.
        spacing: Voxel size (mm) along X, Y, Z.
        template: ``"mni"`` (MNI152 anatomy, needs nilearn, no network) or ``"phantom"``.
        tumour_radius_mm: Approximate whole-tumour radius in mm. Default: random 20-30 mm for
            ``mni`` (capped to 35 % of the smallest field-of-view extent), 40 % of the phantom
            brain's smallest semi-axis.
        flip_axis: Array axis (or axes) whose affine column is negated; ``None`` for none.
        origin: World mm of voxel (0, 0, 0). Default: the grid centre lands on
            :data:`DEFAULT_CENTRE_MM`.
        noise: Rician noise sigma as a fraction of white-matter T1 intensity.
        bias: Strength of the smooth multiplicative bias field (std of its log, roughly).

    Returns:
        The case; all three tumour labels are present whenever the grid has room for them.

    Raises:
        ValueError: bad shape, spacing, template, axis or radius, or a field of view that
            contains no brain.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template '{template}'; choose one of {list(TEMPLATES)}")
    default_shape = BRATS_SHAPE if template == "mni" else PHANTOM_SHAPE
    grid = _check_shape(default_shape if shape is None else shape)
    step = _check_spacing(spacing)
    if tumour_radius_mm is not None and not tumour_radius_mm > 0:
        raise ValueError(f"tumour_radius_mm must be > 0 mm, got {tumour_radius_mm}")
    affine = grid_affine(grid, step.tolist(), flip_axis=flip_axis, origin=origin)
    if template == "mni":
        anatomy, label, centre = _mni_case(rng, grid, affine, tumour_radius_mm)
    else:
        anatomy, label, centre = _phantom_case(rng, grid, affine, tumour_radius_mm)
    blur = 0.5 if template == "mni" else 0.0
    images = _render(rng, anatomy, label, step, noise=noise, bias=bias, blur_mm=blur)
    centre_mm = affine[:3, :3] @ centre + affine[:3, 3]
    midline_x = float((affine[:3, :3] @ ((np.array(grid) - 1) / 2.0) + affine[:3, 3])[0])
    if template == "mni":
        midline_x -= _mni_template().centre_mm[0]
    return SyntheticCase(
        case_id=case_id,
        images=images,
        label=label,
        affine=affine,
        hemisphere="right" if centre_mm[0] > midline_x else "left",
        tumour_centre_mm=(float(centre_mm[0]), float(centre_mm[1]), float(centre_mm[2])),
        template=template,
    )


def make_brats_like(
    *, rng: np.random.Generator, case_id: str = "BraTS20_Training_001"
) -> SyntheticCase:
    """A BraTS-like case: 240 x 240 x 155 at 1 mm, MNI anatomy, the real BraTS affine.

    The affine is exactly :data:`BRATS_AFFINE` (``[[-1,0,0,0],[0,-1,0,239],[0,0,1,0]]``,
    orientation ``LPS``); labels NCR, ED and ET are all present.
    """
    return make_case(
        rng=rng,
        case_id=case_id,
        shape=BRATS_SHAPE,
        spacing=(1.0, 1.0, 1.0),
        template="mni",
        flip_axis=(0, 1),
        origin=(0.0, 239.0, 0.0),
    )


def grid_affine(
    shape: Sequence[int],
    spacing: Sequence[float],
    *,
    flip_axis: int | Sequence[int] | None = 0,
    origin: Sequence[float] | None = None,
) -> NDArray[np.float64]:
    """Diagonal 4x4 voxel -> world (mm) affine with flipped axes and a non-zero origin.

    Args:
        shape: Grid (X, Y, Z) in voxels.
        spacing: Voxel size (mm) per axis.
        flip_axis: Axis or axes whose direction is negated (``None``: none).
        origin: World mm of voxel (0, 0, 0); default centres the grid on
            :data:`DEFAULT_CENTRE_MM`.
    """
    flips = _check_flips(flip_axis)
    signs = np.array([-1.0 if axis in flips else 1.0 for axis in range(3)])
    affine = np.eye(4)
    affine[:3, :3] = np.diag(signs * np.asarray(spacing, dtype=np.float64))
    if origin is None:
        centre = (np.asarray(shape, dtype=np.float64) - 1) / 2.0
        affine[:3, 3] = np.asarray(DEFAULT_CENTRE_MM) - affine[:3, :3] @ centre
    else:
        if len(origin) != 3:
            raise ValueError(f"origin must be 3 numbers (x, y, z mm), got {list(origin)}")
        affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    return affine


# --------------------------------------------------------------------------- argument checks


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 4 for s in shape):
        raise ValueError(f"shape must be 3 sizes >= 4 voxels (X, Y, Z), got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _check_spacing(spacing: Sequence[float]) -> NDArray[np.float64]:
    step = np.asarray(spacing, dtype=np.float64)
    if step.shape != (3,) or not np.all(step > 0):
        raise ValueError(f"spacing must be 3 positive voxel sizes in mm, got {tuple(spacing)}")
    return step


def _check_flips(flip_axis: int | Sequence[int] | None) -> set[int]:
    flips = (
        set()
        if flip_axis is None
        else {flip_axis}
        if isinstance(flip_axis, int)
        else set(flip_axis)
    )
    if not flips <= {0, 1, 2}:
        raise ValueError(f"flip_axis must be 0, 1, 2, a sequence of them or None, got {flip_axis}")
    return flips


# --------------------------------------------------------------------------- MNI template


@dataclass(frozen=True)
class _Template:
    """MNI maps cropped to the brain: (3, I, J, K) float32 [mask, GM, WM] and geometry."""

    maps: NDArray[np.float32]
    origin_mm: NDArray[np.float64]
    spacing_mm: NDArray[np.float64]
    centre_mm: NDArray[np.float64]


@functools.cache
def _mni_template() -> _Template:
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
    inside = np.argwhere(maps[0] > 0.5)
    lo = np.maximum(inside.min(axis=0) - 3, 0)
    hi = np.minimum(inside.max(axis=0) + 4, maps.shape[1:])
    crop = np.ascontiguousarray(maps[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
    crop.setflags(write=False)
    spacing = np.diag(affine[:3, :3]).copy()
    origin = affine[:3, 3] + spacing * lo
    bbox_centre = (inside.min(axis=0) + inside.max(axis=0)) / 2.0
    centre = affine[:3, 3] + spacing * bbox_centre
    return _Template(maps=crop, origin_mm=origin, spacing_mm=spacing, centre_mm=centre)


def _interp_axis(
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


def _mni_coords(
    shape: tuple[int, int, int], affine: NDArray[np.float64]
) -> list[NDArray[np.float64]]:
    """MNI mm coordinate of every index along each axis (grid centre -> MNI brain centre)."""
    tmpl = _mni_template()
    centre_world = affine[:3, :3] @ ((np.array(shape) - 1) / 2.0) + affine[:3, 3]
    shift = tmpl.centre_mm - centre_world
    return [affine[a, a] * np.arange(shape[a]) + affine[a, 3] + shift[a] for a in range(3)]


def _mni_anatomy(shape: tuple[int, int, int], affine: NDArray[np.float64]) -> _Anatomy:
    """Resample the MNI maps onto the grid (separable linear interpolation)."""
    tmpl = _mni_template()
    maps: NDArray[np.float32] = tmpl.maps
    for axis, mm in enumerate(_mni_coords(shape, affine)):
        maps = _interp_axis(maps, (mm - tmpl.origin_mm[axis]) / tmpl.spacing_mm[axis], axis + 1)
    brain = maps[0] > 0.5
    gm = np.where(brain, maps[1], 0.0)
    wm = np.where(brain, maps[2], 0.0)
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.where(brain, 1.0 - gm - wm, 0.0)
    return _Anatomy(brain=brain, probs=np.stack([csf, gm, wm]).astype(np.float32))


def _mni_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    affine: NDArray[np.float64],
    radius_mm: float | None,
) -> tuple[_Anatomy, NDArray[np.uint8], NDArray[np.float64]]:
    """Anatomy, label map and tumour centre (voxel index) for the MNI template."""
    anatomy = _mni_anatomy(shape, affine)
    if not anatomy.brain.any():
        raise ValueError(
            f"the grid {shape} at spacing {np.abs(np.diag(affine)[:3]).tolist()} mm holds no brain; "
            "use a larger shape or spacing"
        )
    step = np.abs(np.diag(affine)[:3])
    fov = np.array(shape) * step
    if radius_mm is None:
        radius_mm = min(float(rng.uniform(20.0, 30.0)), 0.35 * float(fov.min()))
    centre = _pick_centre(rng, anatomy, _mni_coords(shape, affine), step, radius_mm)
    label = _grow_tumour(rng, anatomy, centre, step, radius_mm)
    return anatomy, label, centre.astype(np.float64)


def _pick_centre(
    rng: np.random.Generator,
    anatomy: _Anatomy,
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


# --------------------------------------------------------------------------- tumour


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], cell: float
) -> NDArray[np.float32]:
    """Unit-variance smooth random field on ``shape`` with correlation length ~``cell`` voxels."""
    cell = max(cell, 1.0)
    coarse_shape = tuple(math.ceil(n / cell) + 3 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 0.7)
    for axis, n in enumerate(shape):
        field = _interp_axis(field, np.arange(n) / cell + 1.0, axis)
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


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
    anatomy: _Anatomy,
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
    core = field * np.exp(0.12 * _smooth_noise(rng, field.shape, cell))
    csf, _, wm = anatomy.probs[:, box[0], box[1], box[2]]
    fingers = 0.25 * _smooth_noise(rng, field.shape, cell) + 0.2 * _smooth_noise(
        rng, field.shape, cell / 2
    )
    spread = field**0.6 * np.exp(fingers) * (0.5 + 0.5 * wm)
    brain = anatomy.brain[box] & (csf < 0.6)
    wt = brain & (spread > _WT_LEVEL)
    tc = _top_fraction(core, wt, float(rng.uniform(0.25, 0.5)))
    ncr = _top_fraction(core, tc, float(rng.uniform(0.3, 0.55)))
    local = _nested_labels(ncr, tc, wt, brain, np.unravel_index(int(np.argmax(core)), core.shape))
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = local
    return label


def _top_fraction(
    values: NDArray[np.float32], within: NDArray[np.bool_], fraction: float
) -> NDArray[np.bool_]:
    """The ``fraction`` of ``within`` voxels with the highest ``values`` (a nested blob)."""
    if not within.any():
        return within
    threshold = np.quantile(values[within], 1.0 - fraction)
    return within & (values >= threshold)


def _nested_labels(
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


# --------------------------------------------------------------------------- phantom


def _phantom_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    affine: NDArray[np.float64],
    radius_mm: float | None,
) -> tuple[_Anatomy, NDArray[np.uint8], NDArray[np.float64]]:
    """Ellipsoid brain with nested tumour spheres; returns anatomy, label, centre (voxels)."""
    step = np.abs(np.diag(affine)[:3])
    centre = (np.array(shape) - 1) / 2.0
    semi = 0.42 * np.array(shape) * step
    mm = [
        ((np.arange(n) - c) * d)[:, None, None] for n, c, d in zip(shape, centre, step, strict=True)
    ]
    mm[1], mm[2] = mm[1].reshape(1, -1, 1), mm[2].reshape(1, 1, -1)
    r = np.sqrt(sum((m / s) ** 2 for m, s in zip(mm, semi, strict=True)))
    brain = r <= 1.0
    gm = np.clip((r - 0.72) / 0.12, 0.0, 1.0) * brain
    vent = sum(
        ((m - o) / (s * f)) ** 2
        for m, o, s, f in zip(mm, (0.0, 0.05, 0.0), semi, (0.12, 0.3, 0.15), strict=True)
    )
    csf = np.clip(1.0 - vent, 0.0, 1.0) * brain
    wm = np.clip(brain - gm - csf, 0.0, 1.0)
    anatomy = _Anatomy(
        brain=brain, probs=np.stack(np.broadcast_arrays(csf, gm, wm)).astype(np.float32)
    )
    radius = radius_mm if radius_mm is not None else 0.4 * float(semi.min())
    side = 1.0 if rng.random() < 0.5 else -1.0
    world_offset = np.array([side * 0.45 * semi[0], *rng.uniform(-0.15, 0.15, 2) * semi[1:]])
    tumour = centre + world_offset / np.diag(affine)[:3]
    d = np.sqrt(
        sum((m - (t - c) * s) ** 2 for m, t, c, s in zip(mm, tumour, centre, step, strict=True))
    )
    allowed = np.broadcast_to(brain, shape)
    peak = tuple(
        np.intp(v) for v in np.clip(np.rint(tumour), 0, np.array(shape) - 1).astype(np.intp)
    )
    label = _nested_labels(
        allowed & (d <= 0.3 * radius),
        allowed & (d <= 0.6 * radius),
        allowed & (d <= radius),
        allowed,
        peak,
    )
    return anatomy, label, tumour


# --------------------------------------------------------------------------- intensities


def _bias_field(
    rng: np.random.Generator, unit: list[NDArray[np.float32]], strength: float
) -> NDArray[np.float32]:
    """Smooth multiplicative bias (exp of a random quadratic) at voxels with coords ``unit``.

    Args:
        rng: Random source.
        unit: Per-axis coordinates in [-1, 1] of the voxels, three 1D arrays of equal length.
        strength: Std of the polynomial coefficients.
    """
    u = unit
    coef = rng.normal(0.0, strength, 8).astype(np.float32)
    log_b = coef[0] * u[0] + coef[1] * u[1] + coef[2] * u[2]
    log_b += coef[3] * u[0] ** 2 + coef[4] * u[1] ** 2 + coef[5] * u[2] ** 2
    log_b += coef[6] * u[0] * u[1] + coef[7] * u[1] * u[2]
    return np.exp(log_b).astype(np.float32)


def _tumour_weights(
    rng: np.random.Generator, label: NDArray[np.uint8], step: NDArray[np.float64], blur_mm: float
) -> tuple[tuple[slice, ...], NDArray[np.float32], NDArray[np.float32]]:
    """Bounding box of the tumour, its soft (3, ...) NCR/ED/ET weights and a texture field."""
    where = np.argwhere(label > 0)
    lo, hi = np.maximum(where.min(axis=0) - 2, 0), where.max(axis=0) + 3
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    local = label[box]
    sigma = tuple(float(s) for s in np.clip(blur_mm / step, 0.0, 0.6))
    soft = np.stack([(local == c).astype(np.float32) for c in _TUMOUR_CODES])
    if blur_mm > 0:
        soft = np.stack([ndimage.gaussian_filter(w, sigma) for w in soft])
    texture = _smooth_noise(rng, local.shape, 4.0 / float(step.min()))
    return box, soft, texture


def _render(
    rng: np.random.Generator,
    anatomy: _Anatomy,
    label: NDArray[np.uint8],
    step: NDArray[np.float64],
    *,
    noise: float,
    bias: float,
    blur_mm: float,
) -> dict[str, NDArray[np.float32]]:
    """Four modalities from tissue probabilities and tumour labels, with bias and noise."""
    shape = anatomy.brain.shape
    box, soft, texture = (
        _tumour_weights(rng, label, step, blur_mm) if label.any() else ((), None, None)
    )
    idx = np.nonzero(anatomy.brain)
    probs = anatomy.probs[:, idx[0], idx[1], idx[2]]
    unit = [
        (2.0 * i / max(n - 1, 1) - 1.0).astype(np.float32) for i, n in zip(idx, shape, strict=True)
    ]
    sigma = noise * TISSUE_MEANS["t1"][2]
    images: dict[str, NDArray[np.float32]] = {}
    for name in MODALITIES:
        img = np.zeros(shape, dtype=np.float32)
        img[idx] = np.asarray(TISSUE_MEANS[name], np.float32) @ probs
        if soft is not None and texture is not None:
            means = np.asarray(TUMOUR_MEANS[name], np.float32)[:, None, None, None]
            scale = np.exp(0.08 * texture + 0.03 * _smooth_noise(rng, texture.shape, 3.0))
            tumour = (soft * means).sum(axis=0) * scale
            img[box] = img[box] * (1.0 - soft.sum(axis=0)) + tumour
        values = img[idx] * _bias_field(rng, unit, bias)
        real = values + sigma * rng.standard_normal(values.shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(values.shape, dtype=np.float32)
        img[:] = 0.0
        img[idx] = np.sqrt(real * real + imag * imag)
        images[name] = img
    return images


__all__ = [
    "BRATS_AFFINE",
    "BRATS_SHAPE",
    "DEFAULT_CENTRE_MM",
    "TEMPLATES",
    "SyntheticCase",
    "grid_affine",
    "make_brats_like",
    "make_case",
]
