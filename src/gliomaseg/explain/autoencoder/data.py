"""The autoencoder's data: axial whole-tumour masks on a fixed physical grid (:class:`MaskSet`).

Masks (:func:`load_masks`): every axial slice (axis 2 of the canonical RAS+ arrays) holding
whole tumour (label > 0), from a prepared cache (``label.npy``) or from any folder
:func:`~gliomaseg.io.layouts.find_cases` reads (labelled cases or label-only segmentations).
Each slice is resampled onto a ``size`` x ``size`` grid of ``pixel_mm`` pixels (default
:data:`~gliomaseg.explain.autoencoder.config.FIELD_OF_VIEW_MM` / size: 3.75 mm at 64, 1.875 mm
at 128) centred on the brain's bounding box (the field of view's centre without images; a
prepared cache is already cropped to the brain), by linear interpolation of the 0/1 mask
thresholded at 0.5. A fixed physical pixel keeps the tumour's real size and position in the
mask, so the same tumour gives the same mask whatever the scanner grid. Slices whose tumour
covers fewer than ``min_pixels`` pixels after resampling are skipped. Size (area, mm²) and
irregularity (1 - solidity) are measured on the original slice, before resampling.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.case import Case
from gliomaseg.core.errors import one_line
from gliomaseg.core.geometry import bounding_box, reorient
from gliomaseg.explain.autoencoder.config import AutoencoderConfig
from gliomaseg.explain.shape import solidity_2d
from gliomaseg.io.atomic import write_with
from gliomaseg.io.cache import NETWORK_AXES, case_axes, is_cache, load_index, open_case
from gliomaseg.io.layouts import discover, read_case


@dataclass
class MaskSet:
    """2D tumour masks on the autoencoder's grid, with where each came from.

    Attributes:
        masks: (N, size, size) uint8 0/1 (axis 0 = canonical x, Right->Left is increasing).
        case_ids: (N,) case of each mask.
        slice_index: (N,) axial index of each mask in its case's original (uncropped) grid.
        area_mm2: (N,) whole-tumour area of the original slice, mm².
        irregularity: (N,) 1 - solidity of the original slice's tumour, 0-1.
        patients: (N,) patient of each mask (validation splits keep patients together).
    """

    masks: NDArray[np.uint8]
    case_ids: NDArray[np.str_]
    slice_index: NDArray[np.int64]
    area_mm2: NDArray[np.float64]
    irregularity: NDArray[np.float64]
    patients: NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @classmethod
    def from_arrays(
        cls,
        masks: NDArray[Any],
        *,
        case_ids: Sequence[str] | None = None,
        spacing: Sequence[float] = (1.0, 1.0),
    ) -> MaskSet:
        """Masks already on the grid (N, S, S); each is its own case unless ids are given."""
        arr = (np.asarray(masks) > 0).astype(np.uint8)
        if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
            raise ValueError(f"masks must be (N, S, S), got shape {arr.shape}")
        ids = np.asarray(
            [f"mask_{i:05d}" for i in range(len(arr))] if case_ids is None else list(case_ids)
        )
        return cls(
            masks=arr,
            case_ids=ids,
            slice_index=np.zeros(len(arr), dtype=np.int64),
            area_mm2=arr.reshape(len(arr), -1).sum(1) * float(spacing[0] * spacing[1]),
            irregularity=np.array([1.0 - solidity_2d(m > 0) if m.any() else 0.0 for m in arr]),
            patients=ids.copy(),
        )

    def save(self, path: str | Path) -> None:
        """Write to a compressed ``.npz`` (masks bit-packed), atomically."""
        arrays = {
            "bits": np.packbits(self.masks.astype(bool), axis=None),
            "shape": np.asarray(self.masks.shape),
            "case_ids": self.case_ids,
            "slice_index": self.slice_index,
            "area_mm2": self.area_mm2,
            "irregularity": self.irregularity,
            "patients": self.patients,
        }
        write_with(path, lambda tmp: np.savez_compressed(tmp, **arrays))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> MaskSet:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            shape = tuple(int(s) for s in data["shape"])
            bits = np.unpackbits(data["bits"], count=int(np.prod(shape)))
            return cls(
                bits.reshape(shape).astype(np.uint8),
                data["case_ids"],
                data["slice_index"],
                data["area_mm2"],
                data["irregularity"],
                data["patients"],
            )


def fit_mask(
    plane: NDArray[Any],
    *,
    spacing: Sequence[float],
    size: int,
    pixel_mm: float,
    centre: Sequence[float] | None = None,
) -> NDArray[np.uint8]:
    """Resample a 2D mask onto a ``size`` x ``size`` grid of ``pixel_mm`` pixels.

    Args:
        plane: (X, Y) mask; non-zero is tumour.
        spacing: Pixel size (mm) of ``plane`` along its two axes.
        size: Output side, pixels.
        pixel_mm: Output pixel size, mm.
        centre: Index (fractional) of ``plane`` that lands on the output's centre; default
            the centre of ``plane``.

    Returns:
        (size, size) uint8 0/1: linear interpolation of the 0/1 mask at the output pixel
        centres, >= 0.5. Parts outside ``plane`` are background; parts beyond the output
        grid are cut off.
    """
    arr = np.asarray(plane) > 0
    mid = (np.asarray(arr.shape, dtype=np.float64) - 1) / 2 if centre is None else centre
    offsets = (np.arange(size, dtype=np.float64) - (size - 1) / 2) * pixel_mm
    coords = np.meshgrid(
        mid[0] + offsets / float(spacing[0]), mid[1] + offsets / float(spacing[1]), indexing="ij"
    )
    values = ndimage.map_coordinates(arr.astype(np.float32), coords, order=1, mode="constant")
    return (values >= 0.5).astype(np.uint8)


#: One tumour slice before resampling: case id, patient, slice index, mask, spacing, centre.
_Plane = tuple[str, str, int, NDArray[np.bool_], tuple[float, float], tuple[float, float] | None]


def load_masks(
    source: str | Path, *, config: AutoencoderConfig
) -> tuple[MaskSet, list[tuple[str, str]]]:
    """Axial whole-tumour masks of a prepared cache or a folder of cases/segmentations.

    Args:
        source: Prepared cache (has ``index.json``) or anything ``find_cases`` reads.
        config: Grid (``size``, ``grid_mm``) and ``min_pixels``.

    Returns:
        The masks (see the module docstring) and (path, one-line reason) for every case that
        could not be read or had no label; those are skipped.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: no tumour mask found at all.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such cache or folder; check --masks")
    failures: list[tuple[str, str]] = []
    # Planes are streamed and resampled one at a time: full-size slices never pile up.
    if is_cache(path):
        out = _fit_planes(_cache_planes(path), config)
    else:
        out = _fit_planes(_case_planes(path, failures), config)
    if not len(out):
        raise ValueError(
            f"{path}: no axial tumour mask of at least {config.min_pixels} pixels on the "
            f"{config.size}x{config.size} grid; pass labelled cases or segmentations"
        )
    return out, failures


def _cache_planes(cache: Path) -> Iterator[_Plane]:
    for entry in load_index(cache)["cases"]:
        _, label, meta = open_case(cache, entry["case_id"])
        if label is None:
            continue
        sx, sy = (float(s) for s in meta["spacing_mm"][:2])
        axes = case_axes(meta)  # older LGG caches: TIFF order (in-plane turn, same slices)
        if axes != NETWORK_AXES:
            label = reorient(np.moveaxis(np.asarray(label), 0, -1), axes, NETWORK_AXES)
            label = np.moveaxis(label, -1, 0)
        z0 = int(meta.get("crop", {}).get("start", [0, 0, 0])[2])  # back to the original index
        patient = str(entry.get("patient") or entry["case_id"])
        for z in np.flatnonzero(np.asarray(label).reshape(len(label), -1).any(axis=1)):
            plane = np.asarray(label[z]) > 0
            yield entry["case_id"], patient, z0 + int(z), plane, (sx, sy), None


def _case_planes(folder: Path, failures: list[tuple[str, str]]) -> Iterator[_Plane]:
    """Tumour slices of every case under ``folder``; unreadable cases go to ``failures``."""
    refs, found_failures = _find_refs(folder)
    failures += found_failures
    for ref in refs:
        try:
            case = read_case(ref)
        except (ValueError, FileNotFoundError, OSError) as err:
            failures.append((str(ref.path), one_line(err)))
            continue
        if case.label is None:
            failures.append((str(ref.path), "no label map; pass labelled cases or segmentations"))
            continue
        centre = _brain_centre(case)
        sx, sy, _ = case.spacing
        patient = case.meta.get("patient") or case.case_id
        for z in np.flatnonzero(case.label.any(axis=(0, 1))):
            yield case.case_id, patient, int(z), case.label[:, :, z] > 0, (sx, sy), centre


def _find_refs(path: Path) -> tuple[list[Any], list[tuple[str, str]]]:
    """Cases under ``path``; an entry that breaks discovery is reported, the others found."""
    refs, bad = discover(path)
    return list(refs), [(str(p), msg) for p, msg in bad]


def _brain_centre(case: Case) -> tuple[float, float] | None:
    brain = case.brain_mask
    if brain is None and case.image is not None:
        brain = np.any(case.image != 0, axis=0)
    box = None if brain is None else bounding_box(brain, axes=(0, 1))
    if box is None:
        return None
    return (box[0].start + box[0].stop - 1) / 2.0, (box[1].start + box[1].stop - 1) / 2.0


def _fit_planes(planes: Iterable[_Plane], config: AutoencoderConfig) -> MaskSet:
    keep = []
    for case_id, patient, z, plane, spacing, centre in planes:
        fitted = fit_mask(
            plane, spacing=spacing, size=config.size, pixel_mm=config.grid_mm, centre=centre
        )
        if int(fitted.sum()) >= config.min_pixels:
            area = float(plane.sum()) * spacing[0] * spacing[1]
            keep.append((fitted, case_id, z, area, 1.0 - solidity_2d(plane), patient))
    empty = np.zeros((0, config.size, config.size), dtype=np.uint8)
    return MaskSet(
        masks=np.stack([k[0] for k in keep]) if keep else empty,
        case_ids=np.asarray([k[1] for k in keep], dtype=str),
        slice_index=np.asarray([k[2] for k in keep], dtype=np.int64),
        area_mm2=np.asarray([k[3] for k in keep], dtype=np.float64),
        irregularity=np.asarray([k[4] for k in keep], dtype=np.float64),
        patients=np.asarray([k[5] for k in keep], dtype=str),
    )


def split_patients(
    patients: NDArray[Any], fraction: float, *, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices of training and validation masks; a patient's masks stay on one side.

    ``round(fraction * n_patients)`` patients (at least one) are held out, chosen by a
    permutation seeded with ``seed``; none when there are fewer than five patients.
    """
    names = np.unique(np.asarray(patients))
    n_val = max(1, round(fraction * len(names))) if fraction > 0 and len(names) >= 5 else 0
    held = set(np.random.default_rng([seed, 1]).permutation(names)[:n_val].tolist())
    is_val = np.array([p in held for p in np.asarray(patients).tolist()], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


__all__ = [
    "MaskSet",
    "fit_mask",
    "load_masks",
    "split_patients",
]
