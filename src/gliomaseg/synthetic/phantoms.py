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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.case import MODALITIES, voxel_spacing
from gliomaseg.core.geometry import bounding_box, check_spacing
from gliomaseg.core.labels import ED, ET, NCR
from gliomaseg.synthetic.anatomy import Anatomy, nested_labels, smooth_noise
from gliomaseg.synthetic.mni import mni_case, mni_template

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
    # Over 60 lines for its docstring (every option of a synthetic case); the body is ~30 lines.
    if template not in TEMPLATES:
        raise ValueError(f"unknown template '{template}'; choose one of {list(TEMPLATES)}")
    default_shape = BRATS_SHAPE if template == "mni" else PHANTOM_SHAPE
    grid = _check_shape(default_shape if shape is None else shape)
    step = check_spacing(spacing)
    if tumour_radius_mm is not None and not tumour_radius_mm > 0:
        raise ValueError(f"tumour_radius_mm must be > 0 mm, got {tumour_radius_mm}")
    affine = grid_affine(grid, step.tolist(), flip_axis=flip_axis, origin=origin)
    if template == "mni":
        anatomy, label, centre = mni_case(rng, grid, affine, tumour_radius_mm)
    else:
        anatomy, label, centre = _phantom_case(rng, grid, affine, tumour_radius_mm)
    blur = 0.5 if template == "mni" else 0.0
    images = _render(rng, anatomy, label, step, noise=noise, bias=bias, blur_mm=blur)
    centre_mm = affine[:3, :3] @ centre + affine[:3, 3]
    midline_x = float((affine[:3, :3] @ ((np.array(grid) - 1) / 2.0) + affine[:3, 3])[0])
    if template == "mni":
        midline_x -= mni_template().centre_mm[0]
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


# --------------------------------------------------------------------------- phantom


def _phantom_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    affine: NDArray[np.float64],
    radius_mm: float | None,
) -> tuple[Anatomy, NDArray[np.uint8], NDArray[np.float64]]:
    """Ellipsoid brain with nested tumour spheres; returns anatomy, label, centre (voxels)."""
    step = np.asarray(voxel_spacing(affine))
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
    anatomy = Anatomy(
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
    label = nested_labels(
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
    box = bounding_box(label, margin=2)
    if box is None:  # callers check label.any() first
        raise ValueError("no tumour voxel to render")
    local = label[box]
    sigma = tuple(float(s) for s in np.clip(blur_mm / step, 0.0, 0.6))
    soft = np.stack([(local == c).astype(np.float32) for c in _TUMOUR_CODES])
    if blur_mm > 0:
        soft = np.stack([ndimage.gaussian_filter(w, sigma) for w in soft])
    texture = smooth_noise(rng, local.shape, 4.0 / float(step.min()))
    return box, soft, texture


def _render(
    rng: np.random.Generator,
    anatomy: Anatomy,
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
            scale = np.exp(0.08 * texture + 0.03 * smooth_noise(rng, texture.shape, 3.0))
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
