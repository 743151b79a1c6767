"""Shape, size, composition and position features of a tumour segmentation, in physical units.

Two entry points, both pure numpy/scipy on internal label codes (0 background, 1 NCR/NET,
2 ED, 3 ET; see :mod:`gliomaseg.core.labels`):

* :func:`case_features` -- one dict for a whole (X, Y, Z) label map: volumes in mL, 3D
  solidity, connected components, composition (shares of the whole tumour and of the
  tumour core), centroid, extent, the extent of the tumour's bulk (after an opening, see
  :func:`opened_mask`), laterality, position.
* :func:`slice_features` -- one dict per slice along an axis: areas in mm², perimeter,
  compactness, solidity, eccentricity, components, composition, bulk extent, laterality.

Every feature is named and explained (formula and unit) in :data:`FEATURE_DOCS`, which is
also the data dictionary of the CSV that :func:`write_features` writes.

Geometry comes from the affine only. Voxel sizes are the column norms of its 3x3 part;
centroids, extents and laterality use scanner coordinates (RAS+ mm: +x = patient Right,
+y = Anterior, +z = Superior), so a flipped array with the matching affine gives the same
answer, and array order never decides left from right.

Laterality is :mod:`gliomaseg.core.laterality`'s, the one definition that ``summary.json`` and
the report use too: the brain's midline is the plane ``x = midline_x_mm``, the scanner x of
the brain's centroid (the brain mask, else the image's non-zero voxels or, without a zero
background, its bright foreground; the field of view's centre otherwise). Tumour voxels within
``midline_band_mm`` (default 5 mm) of that plane are "midline"; the others are left
(x < midline) or right (x > midline). The tumour is "bilateral" when each side holds at least
``bilateral_fraction`` (default 20 %) of its volume, "midline" when at least half of it lies
in the band, and otherwise takes the side that holds more of it. With
``orientation_known=False`` (an input that does not record left and right) every side and
position value is ``None``.

Empty masks never raise: sizes, counts and fractions are 0, and shape descriptors that have
no meaning without a tumour (compactness, solidity, eccentricity, centroid, laterality,
position) are ``None``. With ``binary=True`` (LGG FLAIR abnormality, a plain tumour mask) every
non-zero voxel is "tumour" (WT) and the compartment features (TC, ET, NCR, ED, proportions,
rim) are ``None``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import voxel_spacing
from gliomaseg.core.laterality import BILATERAL_FRACTION, MIDLINE_BAND_MM, brain_reference
from gliomaseg.explain.feature_docs import FEATURE_DOCS
from gliomaseg.explain.position import Frame, brain_frame, opened_extent, position_of
from gliomaseg.explain.shape import plane_shape, shape_3d
from gliomaseg.explain.volumes import composition, counts_of, rim_fraction
from gliomaseg.io.atomic import write_json_atomic, write_text_atomic

#: Names of the columns a list of 3 scanner values expands to.
AXIS_WORDS: tuple[str, ...] = ("x", "y", "z")


def _check_inputs(
    label: NDArray[np.integer], affine: NDArray[np.floating], brain_mask: NDArray[Any] | None
) -> tuple[NDArray[np.integer], NDArray[np.float64]]:
    lab = np.asarray(label)
    if lab.ndim != 3:
        raise ValueError(
            f"label map must be 3D (X, Y, Z), got shape {lab.shape}; give 2D slices as "
            "(X, Y, 1) arrays"
        )
    if lab.dtype.kind not in "iub":
        raise ValueError(
            f"label map must hold integer codes, got dtype {lab.dtype}; pass internal codes "
            "(Case.label), not an image or probabilities"
        )
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) == 0:
        raise ValueError(
            f"affine must be a finite, invertible 4x4 voxel -> mm matrix, got {aff.tolist()}; "
            "pass Case.affine"
        )
    if brain_mask is not None and np.shape(brain_mask) != lab.shape:
        raise ValueError(
            f"brain mask shape {np.shape(brain_mask)} differs from label shape {lab.shape}; "
            "pass a mask on the label's grid"
        )
    return lab, aff


def case_features(
    label: NDArray[np.integer],
    *,
    affine: NDArray[np.floating],
    brain_mask: NDArray[Any] | None = None,
    image: NDArray[Any] | None = None,
    binary: bool = False,
    orientation_known: bool = True,
    midline_band_mm: float = MIDLINE_BAND_MM,
    bilateral_fraction: float = BILATERAL_FRACTION,
    to_input: Callable[[NDArray[Any]], NDArray[Any]] | None = None,
) -> dict[str, Any]:
    """Features of a whole label map, in mm and mL (keys and formulas: :data:`FEATURE_DOCS`).

    Args:
        label: (X, Y, Z) integer internal codes (0 bg, 1 NCR/NET, 2 ED, 3 ET), any orientation.
        affine: 4x4 voxel -> scanner RAS+ mm matrix of ``label``.
        brain_mask: Optional (X, Y, Z) brain mask: the midline, brain fraction and position
            are measured against it.
        image: Optional (C, X, Y, Z) or (X, Y, Z) skull-stripped image; its non-zero voxels
            are the brain when no ``brain_mask`` is given.
        binary: The label is a binary tumour mask (WT only; compartment features ``None``).
        orientation_known: False for inputs that do not record left and right
            (:attr:`gliomaseg.core.case.Case.orientation_known`): side and position are ``None``.
        midline_band_mm: Half-width of the midline band, mm.
        bilateral_fraction: Share of the volume each side needs for ``"bilateral"``.
        to_input: Maps (N, 3) indices of ``label`` to the input file's array indices
            (:meth:`gliomaseg.core.case.Case.source_indices`) for ``centroid_voxel``; default:
            indices of ``label`` itself.

    Returns:
        Flat dict of JSON-able values (numbers, strings, ``None``, lists of 3 numbers).
        Empty mask: volumes 0, counts 0, shape and position descriptors ``None``.

    Raises:
        ValueError: a label that is not 3D integer codes, a bad affine, or a brain mask or
            image on another grid.
    """
    # Over 60 lines by its docstring (every argument documented); the body is ~40.
    lab, aff = _check_inputs(label, affine, brain_mask)
    spacing = np.asarray(voxel_spacing(aff))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    brain, reference = brain_reference(lab.shape, brain_mask, image)
    wt = lab > 0
    counts = counts_of(lab, binary=binary)
    out: dict[str, Any] = {
        "kind": "case",
        "empty": counts["WT"] == 0,
        "binary": binary,
        "shape": [int(n) for n in lab.shape],
        "spacing_mm": [float(s) for s in spacing],
        "voxel_volume_ml": voxel_ml,
        "n_voxels": counts["WT"],
        **composition(counts, voxel_ml, binary=binary, prefix="volume_ml"),
        "brain_reference": reference,
        "brain_volume_ml": None if brain is None else int(brain.sum()) * voxel_ml,
        "brain_fraction": None if brain is None else counts["WT"] / max(int(brain.sum()), 1),
    }
    per_slice = wt.sum(axis=(0, 1))
    out.update(
        n_slices=int(np.count_nonzero(per_slice)),
        height_mm=int(np.count_nonzero(per_slice)) * float(spacing[2]),
        max_slice_area_mm2=float(per_slice.max(initial=0)) * float(spacing[0] * spacing[1]),
    )
    out.update(shape_3d(wt, lab, binary=binary))
    out.update(opened_extent(wt, aff))
    locate = _locator(
        aff,
        brain_frame(brain, lab.shape, aff),
        band_mm=midline_band_mm,
        bilateral_fraction=bilateral_fraction,
        orientation_known=orientation_known,
        to_input=to_input,
    )
    out.update(locate(np.argwhere(wt)))
    return out


def _locator(
    affine: NDArray[np.float64],
    frame: Frame,
    *,
    band_mm: float,
    bilateral_fraction: float,
    orientation_known: bool,
    to_input: Callable[[NDArray[Any]], NDArray[Any]] | None,
) -> Callable[[NDArray[np.intp]], dict[str, Any]]:
    """Position features of (N, 3) tumour indices, ``centroid_voxel`` in the input's indices."""

    def locate(points: NDArray[np.intp]) -> dict[str, Any]:
        row = position_of(
            points,
            affine,
            frame,
            band_mm=band_mm,
            bilateral_fraction=bilateral_fraction,
            orientation_known=orientation_known,
        )
        if to_input is not None and row.get("centroid_voxel") is not None:
            centroid = to_input(np.asarray(row["centroid_voxel"]))[0]
            row["centroid_voxel"] = [float(v) for v in centroid]
        return row

    return locate


def slice_features(
    label: NDArray[np.integer],
    *,
    affine: NDArray[np.floating],
    axis: int = 2,
    brain_mask: NDArray[Any] | None = None,
    image: NDArray[Any] | None = None,
    binary: bool = False,
    indices: Sequence[int] | None = None,
    orientation_known: bool = True,
    midline_band_mm: float = MIDLINE_BAND_MM,
    bilateral_fraction: float = BILATERAL_FRACTION,
    to_input: Callable[[NDArray[Any]], NDArray[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per-slice features in mm² and mm (keys and formulas: :data:`FEATURE_DOCS`).

    Args:
        label: (X, Y, Z) integer internal codes; a single 2D slice is (X, Y, 1).
        affine: 4x4 voxel -> scanner RAS+ mm matrix of ``label``.
        axis: Array axis the slices are taken along (2 = axial for RAS+ canonical arrays).
        brain_mask: Optional (X, Y, Z) brain mask (midline, brain fraction, position).
        image: Optional (C, X, Y, Z) image whose non-zero voxels are the brain otherwise.
        binary: The label is a binary tumour mask (compartment features ``None``).
        indices: Slices to describe; default every slice along ``axis``.
        orientation_known: False gives ``None`` side and position (see :func:`case_features`).
        midline_band_mm: Half-width of the midline band, mm.
        bilateral_fraction: Share of the area each side needs for ``"bilateral"``.
        to_input: As for :func:`case_features` (``centroid_voxel`` only; ``slice_index``
            stays the index along ``axis`` of ``label``).

    Returns:
        One flat dict per slice, in ``indices`` order. An empty slice has areas 0,
        perimeter 0, 0 components and ``None`` shape/position descriptors.

    Raises:
        ValueError: bad label, affine, grid, axis or slice index.
    """
    # Over 60 lines by its docstring (every argument documented); the body is ~40.
    lab, aff = _check_inputs(label, affine, brain_mask)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    picks = list(range(lab.shape[axis])) if indices is None else [int(i) for i in indices]
    bad = [i for i in picks if not 0 <= i < lab.shape[axis]]
    if bad:
        raise ValueError(f"slice indices {bad} out of range 0..{lab.shape[axis] - 1}")
    spacing = np.asarray(voxel_spacing(aff))
    brain, reference = brain_reference(lab.shape, brain_mask, image)
    locate = _locator(
        aff,
        brain_frame(brain, lab.shape, aff),
        band_mm=midline_band_mm,
        bilateral_fraction=bilateral_fraction,
        orientation_known=orientation_known,
        to_input=to_input,
    )
    rows = []
    for index in picks:
        plane = np.take(lab, index, axis=axis)
        brain_px = None if brain is None else int(np.take(brain, index, axis=axis).sum())
        row = _slice_row(plane, spacing, axis=axis, index=index, binary=binary, brain_px=brain_px)
        row["brain_reference"] = reference
        row.update(plane_shape(plane > 0, np.delete(spacing, axis)))
        row.update(opened_extent(plane > 0, aff, axis=axis, index=index))
        row.update(locate(np.insert(np.argwhere(plane > 0), axis, index, axis=1)))
        rows.append(row)
    return rows


def _slice_row(
    plane: NDArray[np.integer],
    spacing: NDArray[np.float64],
    *,
    axis: int,
    index: int,
    binary: bool,
    brain_px: int | None,
) -> dict[str, Any]:
    """Areas, composition and brain share of one slice (``brain_px``: its brain pixels)."""
    pixel_area = float(np.prod(np.delete(spacing, axis)))
    counts = counts_of(plane, binary=binary)
    return {
        "kind": "slice",
        "axis": axis,
        "slice_index": index,
        "empty": counts["WT"] == 0,
        "binary": binary,
        "spacing_mm": [float(s) for s in spacing],
        "pixel_area_mm2": pixel_area,
        "n_voxels": counts["WT"],
        **composition(counts, pixel_area, binary=binary, prefix="area_mm2"),
        "brain_reference": None,  # set by the caller, kept in this column order
        "brain_area_mm2": None if brain_px is None else brain_px * pixel_area,
        "brain_fraction": None if not brain_px else counts["WT"] / brain_px,
        "et_rim_fraction": rim_fraction(plane, binary=binary) if counts["WT"] else None,
    }


# --------------------------------------------------------------------------- output


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """Lists of 3 become ``key_x/_y/_z`` columns (``_i/_j/_k`` for voxel indices)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list | tuple):
            names = ("i", "j", "k") if key in ("centroid_voxel", "shape") else AXIS_WORDS
            if len(value) != 3:
                names = tuple(str(n) for n in range(len(value)))
            for name, item in zip(names, value, strict=True):
                flat[f"{key}_{name}"] = item
        elif isinstance(value, dict):
            for name, item in value.items():
                flat[f"{key}_{name}"] = item
        else:
            flat[key] = value
    return flat


def features_csv(features: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """CSV text: one row per feature dict, lists expanded to one column per axis."""
    rows = (
        [_flatten(features)] if isinstance(features, Mapping) else [_flatten(r) for r in features]
    )
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else _cell(row[k]) for k in columns})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}" if math.isfinite(value) else ""
    return value


def write_features(
    features: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    stem: str = "features",
) -> tuple[Path, Path]:
    """Write features as ``<stem>.json`` and ``<stem>.csv`` in ``out_dir``, atomically.

    Args:
        features: A :func:`case_features` dict or a list of :func:`slice_features` dicts.
        out_dir: Folder to write into (created when missing).
        stem: File name without extension.

    Returns:
        Paths of the JSON and CSV files. The JSON holds ``{"features": ..., "docs": ...}``
        where ``docs`` is :data:`FEATURE_DOCS` restricted to the keys present.
    """
    out = Path(out_dir)
    rows = [features] if isinstance(features, Mapping) else list(features)
    keys = {k for row in rows for k in row}
    docs = {k: v for k, v in FEATURE_DOCS.items() if k in keys}
    payload = features if isinstance(features, Mapping) else list(features)
    json_path, csv_path = out / f"{stem}.json", out / f"{stem}.csv"
    write_json_atomic(json_path, {"features": payload, "docs": docs})
    write_text_atomic(csv_path, features_csv(features))
    return json_path, csv_path


__all__ = [
    "AXIS_WORDS",
    "case_features",
    "features_csv",
    "slice_features",
    "write_features",
]
