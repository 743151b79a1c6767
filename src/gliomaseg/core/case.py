"""The canonical model of one case, shared by every reader and every workflow.

A :class:`Case` holds the image channels-first as float32 ``(C, X, Y, Z)`` in the canonical
RAS+ voxel orientation (first axis towards the patient's Right->Left is *increasing* x in
scanner space, i.e. nibabel's ``as_closest_canonical``), the label map as internal codes
(see :mod:`gliomaseg.core.labels`) on the same grid, and enough geometry to write any result
back onto the input's own grid exactly (:meth:`Case.to_source`).

2D inputs (an HDF5 slice, a single NIfTI slice) are cases with Z = 1; an LGG TIFF stack is
a case whose Z axis is the slice number.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.geometry import from_canonical, to_source_indices
from gliomaseg.core.labels import LabelScheme

#: Canonical modality names and the order channels are stored in (MSD / Kaggle HDF5 order).
MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
MODALITY_WORDS: dict[str, str] = {
    "flair": "FLAIR (T2-FLAIR, t2f)",
    "t1": "T1 (pre-contrast, t1n)",
    "t1ce": "T1 post-contrast (T1Gd, t1c)",
    "t2": "T2 (t2w)",
}


@dataclass
class Case:
    """One subject's images and (optionally) labels in canonical form.

    Attributes:
        case_id: Identifier derived from the file names (``BraTS2021_00000``).
        image: (C, X, Y, Z) float32, canonical RAS+ orientation; ``None`` for label-only inputs.
        modalities: Name of each channel, from :data:`MODALITIES` (or another name given by a
            layout config), same length as ``image.shape[0]``.
        label: (X, Y, Z) uint8 internal codes, or ``None`` when the case has no segmentation.
        affine: 4x4 voxel -> scanner (RAS mm) matrix of the canonical arrays.
        scheme: The label scheme the input used (what outputs are written back in by default).
        layout: Name of the detected layout (``brats2020``, ``msd``, ``lgg-tiff``...).
        source: Files the case was read from, by role (``flair``, ``label``...).
        source_affine: Affine of the input files (before reorientation).
        source_shape: Spatial shape of the input files (before reorientation).
        brain_mask: Optional (X, Y, Z) bool mask shipped with the data (BraTS 2013).
        spacing_known: False when the format carries no voxel size (LGG TIFF): volumes are then
            in units of the assumed spacing and flagged as such.
        orientation_known: False when the input does not say which way the patient lies (a
            NIfTI whose header has neither qform nor sform code): the affine is then a
            placeholder, and no left/right (laterality) or A/P/L/R marker is reported.
        slice_names: For stacks of 2D files, the file stem of each Z slice, in slice order.
        meta: Free-form extras (patient id, institution code...).
    """

    case_id: str
    image: np.ndarray | None
    modalities: tuple[str, ...]
    label: np.ndarray | None
    affine: NDArray[np.float64]
    scheme: LabelScheme | None
    layout: str
    source: dict[str, str] = field(default_factory=dict)
    source_affine: NDArray[np.float64] | None = None
    source_shape: tuple[int, ...] | None = None
    brain_mask: np.ndarray | None = None
    spacing_known: bool = True
    orientation_known: bool = True
    slice_names: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (X, Y, Z) of the canonical arrays."""
        arr = self.image[0] if self.image is not None else self.label
        if arr is None:
            raise ValueError(f"{self.case_id}: case holds neither image nor label")
        x, y, z = arr.shape
        return int(x), int(y), int(z)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical X, Y, Z axes."""
        return voxel_spacing(self.affine)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (mm^3 / 1000)."""
        sx, sy, sz = self.spacing
        return sx * sy * sz / 1000.0

    @property
    def input_notes(self) -> dict[str, str]:
        """What the reader noticed about the inputs, by subject (``meta``'s ``<subject>_note``
        entries), e.g. ``{"t1ce": "copy of FLAIR (sequence missing in the source)"}``."""
        suffix = "_note"
        return {k[: -len(suffix)]: v for k, v in self.meta.items() if k.endswith(suffix)}

    def channels(self, names: tuple[str, ...] | list[str]) -> NDArray[np.float32]:
        """Image channels in the requested order.

        Raises:
            ValueError: naming every requested modality the case does not have.
        """
        if self.image is None:
            raise ValueError(f"{self.case_id}: case has no image, only a label map")
        missing = [n for n in names if n not in self.modalities]
        if missing:
            raise ValueError(
                f"{self.case_id}: missing modality {', '.join(missing)} "
                f"(case has {', '.join(self.modalities)}; the model needs {', '.join(names)})"
            )
        idx = [self.modalities.index(n) for n in names]
        return self.image[idx]

    def to_source(self, array: NDArray[np.generic]) -> NDArray[np.generic]:
        """Map a canonical-grid array (..., X, Y, Z) back onto the input file's voxel grid.

        The inverse of the reorientation applied on reading: exact (flips and axis swaps only).
        """
        if self.source_affine is None:
            return array
        return from_canonical(array, self.source_affine)

    def source_indices(self, points: NDArray[np.generic]) -> NDArray[np.float64]:
        """Canonical voxel indices -> voxel indices of the input file's array (as stored).

        Args:
            points: (N, 3) (or (3,)) indices on the canonical grid; fractional allowed.

        Returns:
            (N, D) float indices into the input array, D = 3, or 2 for a 2D input file (its
            one-slice axis dropped). Exact (flips and axis swaps only). Without a recorded
            source geometry the canonical indices are returned.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if self.source_affine is None or self.source_shape is None:
            return pts
        out = to_source_indices(pts, self.source_affine, self.source_shape)
        return out[:, :2] if len(self.source_shape) == 2 else out

    def with_label(self, label: np.ndarray | None) -> Case:
        """A copy of the case with another label map (same grid)."""
        return replace(self, label=label)


def voxel_spacing(affine: NDArray[np.float64]) -> tuple[float, float, float]:
    """Voxel size (mm) of each array axis: the column norms of the affine's 3x3 part."""
    norms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return float(norms[0]), float(norms[1]), float(norms[2])
