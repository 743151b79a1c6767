"""Which side of the brain a tumour lies on: the one definition every output uses.

``summary.json`` (``hemisphere``), ``explain`` (features and sentences) and the report all
call :func:`tumour_side`. Sides are patient sides, read from scanner coordinates (RAS+ mm:
+x is the patient's Right), never from array order, and measured from the brain's own
midline, not from scanner x = 0 (which is wherever the scanner or an export put it).

* **Brain** (:func:`brain_reference`): the brain mask shipped with the data; else the image's
  non-zero voxels when the background is exactly zero (skull-stripped BraTS-style volumes);
  else (a background of noise, as in the LGG TIFFs, which are not skull-stripped) the largest
  connected region brighter than :data:`FOREGROUND_LEVEL` of its channel's range: the head.
* **Midline** (:func:`midline_x_mm`): the mid-sagittal plane ``x = midline_x_mm``, the scanner
  x of the brain's centroid (of the field of view's centre when there is no brain). A centroid
  is used rather than the centre of the brain's left-right extent because it does not move
  with one stray voxel at the edge of a mask.
* **Side** (:func:`laterality_from_fractions`): tumour voxels within ``band_mm`` (default
  :data:`MIDLINE_BAND_MM`) of the midline are "midline", the others left or right of it. The
  tumour is "bilateral" when each side holds at least :data:`BILATERAL_FRACTION` of it,
  "midline" when at least :data:`MIDLINE_MAJORITY` of it lies in the band, otherwise the side
  holding more of it.
* **Orientation unknown** (:attr:`gliomaseg.core.case.Case.orientation_known` False): no side is
  reported (``None``) rather than a guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.geometry import voxel_to_world

#: Half-width (mm) of the band around the midline plane whose voxels count as "midline".
MIDLINE_BAND_MM = 5.0
#: Share of the tumour volume that each hemisphere must hold for "bilateral".
BILATERAL_FRACTION = 0.20
#: Share of the tumour volume within the midline band above which it is "midline".
MIDLINE_MAJORITY = 0.5
#: An image whose exactly-zero voxels are fewer than this share has no zero background.
ZERO_BACKGROUND_FRACTION = 0.05
#: Foreground threshold for images without a zero background: this share of the way from
#: each channel's 1st to its 99th percentile.
FOREGROUND_LEVEL = 0.10
#: Why no side is given for a case whose orientation is unknown.
UNKNOWN_ORIENTATION_NOTE = "orientation unknown: the input does not record left and right"


def _foreground(image: NDArray[Any]) -> NDArray[np.bool_]:
    """(X, Y, Z) head/brain of a (C, X, Y, Z) image with a noisy background."""
    mask = np.zeros(image.shape[1:], dtype=bool)
    for channel in image:
        lo, hi = np.percentile(channel, [1.0, 99.0])
        if hi > lo:
            mask |= channel > lo + FOREGROUND_LEVEL * (hi - lo)
    regions, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(regions.ravel())[1:]
        mask = regions == int(np.argmax(sizes)) + 1
    return mask


def brain_reference(
    shape: tuple[int, ...], brain_mask: NDArray[Any] | None, image: NDArray[Any] | None
) -> tuple[NDArray[np.bool_] | None, str]:
    """The brain the midline (and brain fractions) are measured against.

    Args:
        shape: Spatial shape (X, Y, Z) of the label map.
        brain_mask: Optional (X, Y, Z) mask shipped with the data.
        image: Optional (C, X, Y, Z) or (X, Y, Z) image on the same grid.

    Returns:
        (mask or None, what it is: ``"brain_mask"``, ``"image"`` (non-zero voxels),
        ``"foreground"`` (bright region of an image without zero background) or
        ``"field_of_view"`` (nothing to go on)).

    Raises:
        ValueError: an image on another grid.
    """
    if brain_mask is not None:
        brain = np.asarray(brain_mask).astype(bool)
        if brain.any():
            return brain, "brain_mask"
    if image is None:
        return None, "field_of_view"
    img = np.asarray(image)
    img = img[None] if img.ndim == 3 else img
    if img.shape[1:] != tuple(shape):
        raise ValueError(
            f"image shape {img.shape} does not match label shape {tuple(shape)}; pass "
            "Case.image (C, X, Y, Z) on the label's grid"
        )
    nonzero = np.any(img != 0, axis=0)
    if nonzero.any() and 1.0 - nonzero.mean() >= ZERO_BACKGROUND_FRACTION:
        return nonzero, "image"
    head = _foreground(img)
    if head.any():
        return head, "foreground"
    return None, "field_of_view"


def midline_x_mm(
    brain: NDArray[np.bool_] | None, affine: NDArray[np.floating], shape: tuple[int, ...]
) -> float:
    """Scanner x (mm) of the brain's mid-sagittal plane: x of the brain's centroid.

    Args:
        brain: (X, Y, Z) brain mask, or None for the centre of the field of view.
        affine: 4x4 voxel -> scanner RAS+ mm.
        shape: Spatial shape of the grid.
    """
    aff = np.asarray(affine, dtype=np.float64)
    if brain is None or not brain.any():
        centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    else:
        centre = np.asarray(ndimage.center_of_mass(brain), dtype=np.float64)
    return float(voxel_to_world(centre[None], aff)[0, 0])


def laterality_from_fractions(
    left: float, midline: float, right: float, *, bilateral_fraction: float = BILATERAL_FRACTION
) -> str | None:
    """Side of the brain from the share of the tumour left, within and right of the midline.

    Args:
        left: Share of tumour voxels with x < midline - band.
        midline: Share within the band.
        right: Share with x > midline + band.
        bilateral_fraction: Share each side must hold for ``"bilateral"``.

    Returns:
        ``"bilateral"`` if both sides hold >= ``bilateral_fraction``; else ``"midline"`` if
        >= 50 % lies in the band; else the side holding more; ``None`` when all are 0 (empty).
    """
    if left + midline + right <= 0:
        return None
    if left >= bilateral_fraction and right >= bilateral_fraction:
        return "bilateral"
    if midline >= MIDLINE_MAJORITY:
        return "midline"
    return "right" if right > left else "left"


def side_of_points(
    world_x: NDArray[np.floating],
    midline: float,
    *,
    orientation_known: bool = True,
    band_mm: float = MIDLINE_BAND_MM,
    bilateral_fraction: float = BILATERAL_FRACTION,
) -> dict[str, Any]:
    """Side of a set of tumour voxels given by their scanner x (mm).

    Returns:
        ``midline_x_mm``, ``midline_band_mm``, ``offset_from_midline_mm`` (centroid x minus
        midline, > 0 = patient Right), ``left_fraction``, ``midline_fraction``,
        ``right_fraction`` and ``laterality``. No voxels: fractions 0 and None for the rest.
        Orientation unknown: every side value None and ``laterality_note`` says why.
    """
    x = np.asarray(world_x, dtype=np.float64) - midline
    out: dict[str, Any] = {
        "midline_x_mm": float(midline),
        "midline_band_mm": float(band_mm),
        "offset_from_midline_mm": None,
        "left_fraction": 0.0,
        "midline_fraction": 0.0,
        "right_fraction": 0.0,
        "laterality": None,
    }
    if not orientation_known:
        out.update(
            midline_x_mm=None,
            left_fraction=None,
            midline_fraction=None,
            right_fraction=None,
            laterality_note=UNKNOWN_ORIENTATION_NOTE,
        )
        return out
    if x.size == 0:
        return out
    left = float(np.mean(x < -band_mm))
    right = float(np.mean(x > band_mm))
    out.update(
        offset_from_midline_mm=float(x.mean()),
        left_fraction=left,
        midline_fraction=1.0 - left - right,
        right_fraction=right,
        laterality=laterality_from_fractions(
            left, 1.0 - left - right, right, bilateral_fraction=bilateral_fraction
        ),
    )
    return out


def tumour_side(
    label: NDArray[Any],
    affine: NDArray[np.floating],
    *,
    brain_mask: NDArray[Any] | None = None,
    image: NDArray[Any] | None = None,
    orientation_known: bool = True,
    band_mm: float = MIDLINE_BAND_MM,
    bilateral_fraction: float = BILATERAL_FRACTION,
) -> dict[str, Any]:
    """Side of the whole tumour (label > 0) relative to the brain's midline.

    Args:
        label: (X, Y, Z) label map (any non-zero value is tumour), any orientation.
        affine: 4x4 voxel -> scanner RAS+ mm matrix of ``label``.
        brain_mask: Optional (X, Y, Z) brain mask (see :func:`brain_reference`).
        image: Optional (C, X, Y, Z) image, the brain's source without a mask.
        orientation_known: False gives no side (see the module docstring).
        band_mm: Half-width of the midline band, mm.
        bilateral_fraction: Share of the tumour each side needs for ``"bilateral"``.

    Returns:
        :func:`side_of_points`'s dict plus ``brain_reference``.
    """
    lab = np.asarray(label)
    aff = np.asarray(affine, dtype=np.float64)
    brain, reference = brain_reference(lab.shape, brain_mask, image)
    midline = midline_x_mm(brain, aff, lab.shape)
    world_x = voxel_to_world(np.argwhere(lab != 0), aff)[:, 0]
    side = side_of_points(
        world_x,
        midline,
        orientation_known=orientation_known,
        band_mm=band_mm,
        bilateral_fraction=bilateral_fraction,
    )
    return {**side, "brain_reference": reference}


__all__ = [
    "BILATERAL_FRACTION",
    "MIDLINE_BAND_MM",
    "MIDLINE_MAJORITY",
    "UNKNOWN_ORIENTATION_NOTE",
    "brain_reference",
    "laterality_from_fractions",
    "midline_x_mm",
    "side_of_points",
    "tumour_side",
]
