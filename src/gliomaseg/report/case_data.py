"""What a case report reads, and the checks that become its warnings.

Inputs of one case (all optional except the summary):

* ``<id>_summary.json`` (``gliomaseg segment``): volumes, geometry, per-slice probabilities,
  the input files, the label scheme;
* ``<id>_seg.nii.gz`` and ``<id>_probs.nii.gz`` (``segment``), on the input's file grid;
* the input modalities named in the summary's ``inputs`` (NIfTI per modality, else any
  layout :func:`~gliomaseg.io.layouts.read_case` understands);
* ``<id>_features.json``, ``<id>_explanation.json`` and ``<id>_mesh.png`` (``gliomaseg
  explain``), in the same folder or another one.

Every volume is reoriented to canonical RAS+ (:func:`~gliomaseg.core.geometry.to_canonical`,
flips and axis swaps only), where the summary's slice indices live. A missing or unreadable
optional input is recorded as a note (shown as a warning), never an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import MODALITIES, voxel_spacing
from gliomaseg.core.errors import InputError, one_line
from gliomaseg.core.geometry import to_canonical
from gliomaseg.io import nifti
from gliomaseg.io.labelmap import read_label_map
from gliomaseg.io.layouts import find_cases, read_case
from gliomaseg.io.outputs import SEG_SUFFIX, SUMMARY_SUFFIX, explain_outputs, segment_outputs
from gliomaseg.report.style import MODALITY_TITLES

log = logging.getLogger(__name__)


@dataclass
class CaseFiles:
    """The files of one case report (``None`` where absent) and the parsed JSON.

    ``explanation`` is the :func:`~gliomaseg.explain.summary.summarise_case` output (taken
    out of ``gliomaseg explain``'s wrapper), ``explain_notes`` that wrapper's notes.
    """

    case_id: str
    folder: Path
    summary: dict[str, Any]
    seg: Path | None = None
    probs: Path | None = None
    features: dict[str, Any] | None = None
    feature_docs: dict[str, str] = field(default_factory=dict)
    explanation: dict[str, Any] | None = None
    explain_notes: list[str] = field(default_factory=list)
    mesh_png: Path | None = None
    explain_dir: Path | None = None


@dataclass
class CaseVolumes:
    """Canonical RAS+ arrays of a case; ``notes`` says what could not be loaded and why.

    Attributes:
        images: Modality -> (X, Y, Z) float32 intensities.
        prediction: (X, Y, Z) uint8 internal codes of ``<id>_seg.nii.gz``.
        reference: (X, Y, Z) uint8 internal codes of the ``--reference`` label map.
        probs: (K, X, Y, Z) float32 probabilities of ``<id>_probs.nii.gz``, 0-1.
        spacing: Voxel size (mm) along X, Y, Z.
        binary: The label scheme only knows tumour vs background.
        orientation_known: False when the segmentation's header records no orientation (its
            input did not): figures then carry no A/P/L/R markers.
        notes: One line per optional input that is missing or unreadable.
    """

    images: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    prediction: NDArray[np.uint8] | None = None
    reference: NDArray[np.uint8] | None = None
    probs: NDArray[np.float32] | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    binary: bool = False
    orientation_known: bool = True
    notes: list[str] = field(default_factory=list)


def summary_ids(folder: str | Path) -> list[str]:
    """Case ids of every ``<id>_summary.json`` in ``folder``, sorted.

    Raises:
        ValueError: the folder does not exist.
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{path}: no such folder; pass the output folder of 'gliomaseg segment'")
    found = path.glob(f"*{SUMMARY_SUFFIX}")
    return sorted(p.name.removesuffix(SUMMARY_SUFFIX) for p in found)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: not readable JSON ({type(err).__name__}: {err}); re-run the command "
            "that wrote it"
        ) from None


def find_case_files(
    folder: str | Path, case_id: str, *, explain_dir: str | Path | None = None
) -> CaseFiles:
    """Locate and parse the outputs of one case.

    Args:
        folder: Output folder of ``gliomaseg segment``.
        case_id: The case (``<id>_summary.json`` must exist).
        explain_dir: Folder of ``gliomaseg explain`` outputs (default: ``folder``).

    Raises:
        ValueError: missing folder or summary, unreadable JSON (the message names the file).
    """
    root = Path(folder)
    ids = summary_ids(root)
    written = segment_outputs(case_id, root)
    summary_path = written.summary
    if not summary_path.is_file():
        known = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "") if ids else "none"
        raise ValueError(
            f"{summary_path}: no summary for case '{case_id}' (summaries here: {known}); run "
            "'gliomaseg segment' for it or pass --case with one of those ids"
        )
    summary = _read_json(summary_path)
    if not isinstance(summary, dict):
        raise ValueError(f"{summary_path}: expected a JSON object; re-run 'gliomaseg segment'")
    files = CaseFiles(case_id=case_id, folder=root, summary=summary)
    files.seg = _existing(written.seg)
    files.probs = _existing(written.probs)
    explain = Path(explain_dir) if explain_dir is not None else root
    files.explain_dir = explain
    explained = explain_outputs(case_id, explain)
    feats = _existing(explained.features_json)
    expl = _existing(explained.explanation)
    if feats is not None:
        payload = _read_json(feats)
        files.features = payload.get("features") if isinstance(payload, dict) else None
        files.feature_docs = dict(payload.get("docs") or {}) if isinstance(payload, dict) else {}
    if expl is not None:
        files.explanation, files.explain_notes = _case_summary(_read_json(expl))
        if files.features is None and files.explanation is not None:
            files.features = files.explanation.get("features")
    files.mesh_png = _existing(explained.mesh_png)
    return files


def _case_summary(raw: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``summarise_case`` dict inside an explanation file, and the explain notes.

    ``gliomaseg explain`` wraps the summary (``{"summary": {...}, "notes": [...], ...}``); a
    bare :func:`~gliomaseg.explain.summary.summarise_case` output is accepted as well.
    """
    if not isinstance(raw, dict):
        return None, []
    notes = [str(n) for n in raw.get("notes") or []]
    inner = raw.get("summary")
    if isinstance(inner, dict) and "sentences" in inner:
        return inner, notes
    return (raw, notes) if "sentences" in raw else (None, notes)


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _resolve_input(value: str, folder: Path) -> Path:
    """An input path from the summary: as written, else relative to the output folder."""
    path = Path(value)
    if path.exists() or path.is_absolute():
        return path
    return folder / path


def load_volumes(
    files: CaseFiles,
    *,
    reference: str | Path | None = None,
    reference_scheme: str | None = None,
) -> CaseVolumes:
    """Read the images, prediction, probabilities and reference of a case, canonical RAS+.

    Args:
        files: From :func:`find_case_files`.
        reference: Reference label map: a NIfTI file, or a dataset folder holding the case.
        reference_scheme: Label scheme of the reference (default: guessed, preferring the
            summary's ``label_scheme``).

    Raises:
        ValueError: the reference cannot be read or is not on the prediction's grid (it was
            asked for explicitly, so this is an error, not a note).
    """
    out = CaseVolumes()
    hint = files.summary.get("label_scheme")
    if files.seg is not None:
        try:
            seg = read_label_map(files.seg, hint=hint)
            out.prediction, affine = seg.canonical()
            out.spacing = voxel_spacing(affine)
            out.binary = seg.scheme.binary
            out.orientation_known = nifti.orientation_known(files.seg)
        except (ValueError, FileNotFoundError) as err:
            # The segmentation is what the report is about: a corrupt one is an error.
            raise InputError(f"{files.seg}: {one_line(err)}") from None
    else:
        out.notes.append(f"no {files.case_id}{SEG_SUFFIX} in {files.folder}: masks not shown")
    _load_images(files, out)
    if files.probs is not None:
        _load_probs(files.probs, out)
    if reference is not None:
        ref, ref_file = _reference_labels(
            Path(reference), files.case_id, hint=reference_scheme or hint, force=reference_scheme
        )
        grid = (
            out.prediction if out.prediction is not None else next(iter(out.images.values()), None)
        )
        if grid is not None and ref.shape != grid.shape:
            raise ValueError(
                f"{ref_file}: reference grid {ref.shape} differs from the case's {grid.shape}; "
                "pass the reference label map of this case, on the input's grid"
            )
        out.reference = ref
    return out


def _reference_labels(
    path: Path, case_id: str, *, hint: str | None, force: str | None
) -> tuple[NDArray[np.uint8], Path]:
    """The reference as canonical internal codes, and the file or folder it came from.

    A label NIfTI, or a folder holding the case: its label file, or for layouts whose labels
    are not one NIfTI (LGG TIFF masks, HDF5 masks) the label ``read_case`` assembles.
    """
    if path.is_file():
        return read_label_map(path, scheme=force, hint=hint).canonical()[0], path
    if not path.exists():
        raise ValueError(f"{path}: no such reference file or folder; check --reference")
    for ref in find_cases(path):
        if ref.case_id != case_id:
            continue
        if ref.label is not None:
            return read_label_map(ref.label, scheme=force, hint=hint).canonical()[0], ref.label
        if ref.layout in ("lgg-tiff", "kaggle-h5"):
            case = read_case(ref, label_scheme=force)
            if case.label is not None:
                return np.asarray(case.label, dtype=np.uint8), ref.path
    raise ValueError(
        f"{path}: holds no label map for case '{case_id}'; pass the case's segmentation file "
        "with --reference"
    )


def _load_images(files: CaseFiles, out: CaseVolumes) -> None:
    inputs = {str(k): str(v) for k, v in (files.summary.get("inputs") or {}).items()}
    per_modality = {m: inputs[m] for m in MODALITIES if m in inputs}
    if per_modality:
        for name, value in per_modality.items():
            _load_modality(name, _resolve_input(value, files.folder), out)
        return
    source = inputs.get("image") or inputs.get("folder")
    if source is None:
        out.notes.append("the summary names no input images: image panels not shown")
        return
    try:
        _load_case_images(_resolve_input(source, files.folder), files.case_id, out)
    except (ValueError, FileNotFoundError, OSError) as err:
        out.notes.append(f"input images not shown: {one_line(err)}")


def _load_modality(name: str, path: Path, out: CaseVolumes) -> None:
    title = MODALITY_TITLES.get(name, name)
    if not path.exists():
        out.notes.append(f"{title} input {path} not found: its panels are not shown")
        return
    try:
        data, affine = nifti.read_image(path, allow_empty=True)
    except (ValueError, FileNotFoundError) as err:
        out.notes.append(f"{title} not shown: {one_line(err)}")
        return
    if data.ndim == 2:  # a single-slice export: one axial slice, as segment reads it
        data = data[..., None]
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        out.notes.append(f"{title} input {path} has shape {data.shape}, not 3D: not shown")
        return
    image, canon = to_canonical(data, affine)
    if out.prediction is not None and image.shape != out.prediction.shape:
        out.notes.append(
            f"{title} grid {image.shape} differs from the segmentation's "
            f"{out.prediction.shape}: not shown"
        )
        return
    if out.prediction is None:
        out.spacing = voxel_spacing(canon)
    out.images[name] = np.asarray(image, dtype=np.float32)


def _load_case_images(path: Path, case_id: str, out: CaseVolumes) -> None:
    refs = find_cases(path)
    ref = next((r for r in refs if r.case_id == case_id), refs[0])
    case = read_case(ref, with_label=False)
    if case.image is None:
        out.notes.append(f"{path}: holds no image: image panels not shown")
        return
    for k, name in enumerate(case.modalities):
        if out.prediction is not None and case.image[k].shape != out.prediction.shape:
            out.notes.append(f"{name}: grid differs from the segmentation's: not shown")
            continue
        out.images[name] = np.asarray(case.image[k], dtype=np.float32)
    if out.prediction is None:
        out.spacing = case.spacing


def _load_probs(path: Path, out: CaseVolumes) -> None:
    try:
        data, affine = nifti.read_image(path, allow_empty=True)
    except (ValueError, FileNotFoundError) as err:
        out.notes.append(f"probability map not shown: {one_line(err)}")
        return
    if data.ndim == 3:
        data = data[..., None]
    probs, _ = to_canonical(np.moveaxis(data, -1, 0), affine)
    grid = out.prediction.shape if out.prediction is not None else probs.shape[1:]
    if probs.ndim != 4 or probs.shape[1:] != grid:
        out.notes.append(f"{path}: shape {data.shape} does not match the case grid: not shown")
        return
    out.probs = np.clip(np.asarray(probs, dtype=np.float32), 0.0, 1.0)


# --------------------------------------------------------------------------- checks
