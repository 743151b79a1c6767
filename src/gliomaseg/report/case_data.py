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
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import MODALITIES
from gliomaseg.core.errors import InputError, one_line
from gliomaseg.core.geometry import to_canonical
from gliomaseg.core.labels import LabelScheme, guess_scheme
from gliomaseg.io import nifti
from gliomaseg.report.style import MODALITY_TITLES

log = logging.getLogger(__name__)

#: Mean, over slices with predicted tumour, of the per-slice maximum probability below which
#: the segmentation is flagged as low confidence.
LOW_CONFIDENCE_MEAN = 0.7
#: Highest per-slice maximum probability below which a whole case is low confidence.
LOW_PEAK_PROBABILITY = 0.9
#: A modality that is zero over more than this share of the brain (the union of the other
#: modalities' non-zero voxels) is flagged: cropped, misregistered or masked differently.
MIN_BRAIN_COVERAGE = 0.5
#: Share of brain voxels at the maximum value above which a modality looks clipped.
MAX_SATURATED_FRACTION = 0.05
#: A maximum above p99 + this many (p99 - p1) looks like spikes or a wrong scaling.
OUTLIER_RANGES = 10.0
#: p99 / p50 inside the brain above which the intensity histogram is far from an MR image's
#: (brain MR: about 1.2-4; a skull left in, a huge lesion or an ill-scaled export give more).
MAX_P99_OVER_MEDIAN = 20.0
#: How many slices the image panels show at most.
MAX_SLICES = 4
#: Share of the predicted whole-tumour volume that postprocessing (removal of small
#: connected components) may take away before the report warns. Component removal is meant
#: to drop specks; when it takes a tenth or more of what the network predicted, the result
#: depends on the threshold and the removed regions deserve a look.
MAX_REMOVED_FRACTION = 0.10


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
    return sorted(p.name.removesuffix("_summary.json") for p in path.glob("*_summary.json"))


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
    summary_path = root / f"{case_id}_summary.json"
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
    files.seg = _existing(root / f"{case_id}_seg.nii.gz")
    files.probs = _existing(root / f"{case_id}_probs.nii.gz")
    explain = Path(explain_dir) if explain_dir is not None else root
    files.explain_dir = explain
    feats = _existing(explain / f"{case_id}_features.json")
    expl = _existing(explain / f"{case_id}_explanation.json")
    if feats is not None:
        payload = _read_json(feats)
        files.features = payload.get("features") if isinstance(payload, dict) else None
        files.feature_docs = dict(payload.get("docs") or {}) if isinstance(payload, dict) else {}
    if expl is not None:
        files.explanation, files.explain_notes = _case_summary(_read_json(expl))
        if files.features is None and files.explanation is not None:
            files.features = files.explanation.get("features")
    files.mesh_png = _existing(explain / f"{case_id}_mesh.png")
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
            out.prediction, affine, scheme = read_labels(files.seg, hint=hint)
            out.spacing = _spacing(affine)
            out.binary = scheme.binary
            out.orientation_known = nifti.orientation_known(files.seg)
        except (ValueError, FileNotFoundError) as err:
            # The segmentation is what the report is about: a corrupt one is an error.
            raise InputError(f"{files.seg}: {one_line(err)}") from None
    else:
        out.notes.append(f"no {files.case_id}_seg.nii.gz in {files.folder}: masks not shown")
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


def read_labels(
    path: Path, *, hint: str | None, force: str | None = None
) -> tuple[NDArray[np.uint8], NDArray[np.float64], LabelScheme]:
    """A label NIfTI as canonical internal codes, its canonical affine and its scheme."""
    from gliomaseg.core.labels import get_scheme

    raw, affine = nifti.read_label(path)
    if raw.ndim == 4 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise ValueError(f"{path}: label map has shape {raw.shape}; expected 3D (X, Y, Z)")
    values = {int(v) for v in np.unique(raw)}
    scheme = get_scheme(force) if force else guess_scheme(values, hint=hint)
    codes, canon_affine = to_canonical(scheme.encode(raw, source=str(path)), affine)
    return np.asarray(codes, dtype=np.uint8), canon_affine, scheme


def _reference_labels(
    path: Path, case_id: str, *, hint: str | None, force: str | None
) -> tuple[NDArray[np.uint8], Path]:
    """The reference as canonical internal codes, and the file or folder it came from.

    A label NIfTI, or a folder holding the case: its label file, or for layouts whose labels
    are not one NIfTI (LGG TIFF masks, HDF5 masks) the label ``read_case`` assembles.
    """
    if path.is_file():
        return read_labels(path, hint=hint, force=force)[0], path
    if not path.exists():
        raise ValueError(f"{path}: no such reference file or folder; check --reference")
    from gliomaseg.io.layouts import find_cases, read_case

    for ref in find_cases(path):
        if ref.case_id != case_id:
            continue
        if ref.label is not None:
            return read_labels(ref.label, hint=hint, force=force)[0], ref.label
        if ref.layout in ("lgg-tiff", "kaggle-h5"):
            case = read_case(ref, label_scheme=force)
            if case.label is not None:
                return np.asarray(case.label, dtype=np.uint8), ref.path
    raise ValueError(
        f"{path}: holds no label map for case '{case_id}'; pass the case's segmentation file "
        "with --reference"
    )


def _spacing(affine: NDArray[np.float64]) -> tuple[float, float, float]:
    norms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return float(norms[0]), float(norms[1]), float(norms[2])


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
        out.spacing = _spacing(canon)
    out.images[name] = np.asarray(image, dtype=np.float32)


def _load_case_images(path: Path, case_id: str, out: CaseVolumes) -> None:
    from gliomaseg.io.layouts import find_cases, read_case

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


def intensity_stats(images: dict[str, NDArray[np.floating]]) -> dict[str, dict[str, Any]]:
    """Per modality: brain percentiles and the numbers the intensity warnings use.

    The brain is the union of every modality's non-zero voxels (inputs are skull-stripped,
    zero outside the brain).

    Returns:
        Modality -> ``{"p1", "p50", "p99", "max", "coverage", "saturated", "nonfinite"}``;
        ``coverage`` is the share of brain voxels where the modality is non-zero,
        ``saturated`` the share of brain voxels equal to its maximum. Percentiles are None
        when the brain is empty.
    """
    if not images:
        return {}
    brain = np.zeros(next(iter(images.values())).shape, dtype=bool)
    for data in images.values():
        brain |= np.isfinite(data) & (data != 0)
    stats: dict[str, dict[str, Any]] = {}
    for name, data in images.items():
        values = data[brain]
        finite = values[np.isfinite(values)]
        entry: dict[str, Any] = {"nonfinite": int(values.size - finite.size), "coverage": None}
        if finite.size:
            p1, p50, p99 = (float(v) for v in np.percentile(finite, [1, 50, 99]))
            top = float(finite.max())
            entry.update(p1=p1, p50=p50, p99=p99, max=top)
            entry["coverage"] = float(np.count_nonzero(finite) / max(values.size, 1))
            entry["saturated"] = float(np.count_nonzero(finite == top) / finite.size)
        else:
            entry.update(p1=None, p50=None, p99=None, max=None, saturated=None)
        stats[name] = entry
    return stats


def intensity_warnings(stats: dict[str, dict[str, Any]]) -> list[str]:
    """One line per modality whose intensities look wrong (thresholds: module constants)."""
    out: list[str] = []
    for name, s in stats.items():
        title = MODALITY_TITLES.get(name, name)
        if s["nonfinite"]:
            out.append(f"unusual intensity: {title} has {s['nonfinite']} NaN/Inf brain voxel(s)")
        if s["p50"] is None:
            continue
        spread = s["p99"] - s["p1"]
        if spread <= 1e-6 * max(1.0, abs(s["p50"])):
            out.append(
                f"unusual intensity: {title} is constant inside the brain (about {s['p50']:.4g}):"
                " an empty or corrupt channel"
            )
            continue
        if s["coverage"] is not None and s["coverage"] < MIN_BRAIN_COVERAGE:
            out.append(
                f"unusual intensity: {title} is zero over {100 * (1 - s['coverage']):.0f}% of "
                "the brain the other modalities cover: cropped, misregistered or masked "
                "differently"
            )
        if s["saturated"] is not None and s["saturated"] > MAX_SATURATED_FRACTION:
            out.append(
                f"unusual intensity: {100 * s['saturated']:.0f}% of {title} brain voxels sit at "
                f"its maximum {s['max']:.4g}: clipped or saturated"
            )
        if s["max"] > s["p99"] + OUTLIER_RANGES * spread:
            out.append(
                f"unusual intensity: {title} has extreme values (max {s['max']:.4g}, 99th "
                f"percentile {s['p99']:.4g}): spikes or a wrong scaling"
            )
        if s["p50"] > 0 and s["p99"] / s["p50"] > MAX_P99_OVER_MEDIAN:
            out.append(
                f"unusual intensity: {title} 99th percentile is {s['p99'] / s['p50']:.0f}x its "
                "brain median: far from a skull-stripped MR image (skull left in? wrong file?)"
            )
    return out


def confidence_warnings(
    summary: dict[str, Any], prediction: NDArray[np.integer] | None
) -> list[str]:
    """Low-confidence lines from the summary's per-slice maximum probabilities."""
    slices = summary.get("slices") or []
    if not slices:
        return []
    probs = {int(s["index"]): float(s["max_tumour_probability"]) for s in slices}
    # the flag threshold of older summaries was on this maximum probability; ranked review
    # flags (``review``) threshold an uncertainty score instead, so use the old default here
    threshold = LOW_PEAK_PROBABILITY if "review" in summary else summary.get("flag_threshold")
    out: list[str] = []
    top = max(probs.values())
    if threshold is not None and top < float(threshold):
        out.append(
            f"low confidence: no slice reaches the flag threshold {float(threshold):g} "
            f"(highest maximum probability {top:.2f}); review the whole case"
        )
    if prediction is not None:
        rows = np.flatnonzero(prediction.any(axis=(0, 1)))
        tumour = [int(z) for z in rows if int(z) in probs]
    else:
        tumour = [z for z, p in probs.items() if p >= 0.5]
    if tumour:
        mean = float(np.mean([probs[z] for z in tumour]))
        if mean < LOW_CONFIDENCE_MEAN:
            out.append(
                f"low confidence: mean of the per-slice maximum probability over the "
                f"{len(tumour)} slice(s) with predicted tumour is {mean:.2f} "
                f"(below {LOW_CONFIDENCE_MEAN:g})"
            )
    return out


def postprocessing_warnings(summary: dict[str, Any]) -> list[str]:
    """A line when postprocessing removed a large share of the prediction.

    Reads the ``postprocessing`` record of ``<id>_summary.json``: ``removed_fraction`` (share
    of ``wt_before_ml``, the whole tumour the network predicted, that component removal took
    away) against :data:`MAX_REMOVED_FRACTION`. A record from before these fields existed
    only says how many components went, so removed components are then reported without a
    share.
    """
    record = summary.get("postprocessing")
    if not isinstance(record, dict) or not record.get("components_removed"):
        return []
    n = int(record["components_removed"])
    what = (
        f"{n} connected component{'s' if n != 1 else ''} under "
        f"{float(record.get('min_component_ml') or 0):g} mL"
    )
    fraction = record.get("removed_fraction")
    if fraction is None:
        return [
            f"postprocessing removed {what}; the summary does not record their volume (made "
            "by an older gliomaseg): re-run 'gliomaseg segment' to see their share"
        ]
    if float(fraction) < MAX_REMOVED_FRACTION:
        return []
    return [
        f"postprocessing removed {100 * float(fraction):.0f}% of the predicted whole tumour "
        f"({float(record.get('removed_ml') or 0):.1f} of "
        f"{float(record.get('wt_before_ml') or 0):.1f} mL; warning from "
        f"{100 * MAX_REMOVED_FRACTION:.0f}%): {what}; the network predicted tumour there, "
        "review the removed regions (--min-component-ml 0 keeps them)"
    ]


def reference_scores(volumes: CaseVolumes) -> dict[str, dict[str, float]] | None:
    """Dice, HD95 and volumes of the prediction against the ``--reference`` label map.

    :func:`gliomaseg.evaluate.metrics.region_metrics` per region (WT, TC, ET; ``tumour`` for binary
    predictions), at the case's voxel size, BraTS empty-mask policy.

    Returns:
        Region -> :data:`gliomaseg.evaluate.metrics.METRIC_NAMES` values, or ``None`` without both a
        prediction and a reference.
    """
    if volumes.prediction is None or volumes.reference is None:
        return None
    from gliomaseg.core.labels import REGIONS
    from gliomaseg.evaluate.metrics import BINARY_REGIONS, region_metrics

    return region_metrics(
        volumes.prediction,
        volumes.reference,
        spacing=volumes.spacing,
        regions=BINARY_REGIONS if volumes.binary else REGIONS,
        labels=(),
    )


def case_warnings(files: CaseFiles, volumes: CaseVolumes) -> list[str]:
    """Every warning of a case report, most important first."""
    summary = files.summary
    out = training_case_warning(summary)
    out += confidence_warnings(summary, volumes.prediction)
    volumes_ml = summary.get("volumes_ml") or {}
    if volumes_ml and not any(float(v or 0) > 0 for v in volumes_ml.values()):
        out.append("no tumour segmented: every predicted volume is 0 mL")
    out += postprocessing_warnings(summary)
    inputs = summary.get("inputs") or {}
    # Only judge when the modalities are known (per-modality inputs, or images read from a
    # folder); an unreadable folder is already reported in the notes.
    known = {m for m in MODALITIES if m in inputs} | set(volumes.images)
    for name in MODALITIES if known else ():
        if name not in known:
            out.append(f"missing modality: {MODALITY_TITLES[name]} is not among the case's inputs")
    if summary.get("spacing_known") is False or not summary.get("spacing_mm"):
        out.append(
            "spacing unknown: the input files carry no voxel size; volumes (mL) and lengths "
            "(mm) assume the default spacing " + _spacing_text(summary.get("spacing_mm"))
        )
    out += intensity_warnings(intensity_stats(volumes.images))
    out += volumes.notes
    return out


def training_case_warning(summary: dict[str, Any]) -> list[str]:
    """One line when ``segment`` found the case among the model's training cases."""
    record = summary.get("training_case") or {}
    if record.get("used_to_train_model") is not True:
        return []
    return [f"training case ({record.get('matched')}): {record.get('note')}"]


def _spacing_text(spacing: Any) -> str:
    if not spacing:
        return "(not recorded)"
    return "(" + " x ".join(f"{float(s):g}" for s in spacing) + " mm)"


def choose_slices(
    summary: dict[str, Any], prediction: NDArray[np.integer] | None, *, n: int = MAX_SLICES
) -> list[int]:
    """Axial indices to show: flagged slices, else the most probable, else the largest tumour.

    Ranked review flags (a summary with ``review``) give their ``n`` highest-ranked slices.
    Older summaries flag every probable slice: more than ``n`` are thinned to ``n`` spread
    evenly over their range (the centres of ``n`` equal groups), so the panels follow the
    tumour from bottom to top. Returns an empty list when nothing points at a slice.
    """
    slices = summary.get("slices") or []
    by_name = {str(s["slice"]): int(s["index"]) for s in slices}
    named = [by_name[str(f)] for f in summary.get("flagged_slices") or [] if str(f) in by_name]
    if named and "review" in summary:  # ranked, most uncertain first
        return sorted(dict.fromkeys(named[:n]))
    flagged = sorted(set(named))
    if flagged:
        if len(flagged) <= n:
            return flagged
        picks = [flagged[int((2 * k + 1) * len(flagged) / (2 * n))] for k in range(n)]
        return sorted(set(picks))
    ranked = sorted(
        (s for s in slices if float(s["max_tumour_probability"]) > 0),
        key=lambda s: -float(s["max_tumour_probability"]),
    )
    if ranked:
        return sorted(int(s["index"]) for s in ranked[:n])
    if prediction is not None and prediction.any():
        area = prediction.astype(bool).sum(axis=(0, 1))
        return sorted(int(z) for z in np.argsort(-area, kind="stable")[:n] if area[z] > 0)
    return []


def display_window(data: NDArray[np.floating]) -> tuple[float, float]:
    """(low, high) display window: 1st and 99th percentiles of the non-zero finite voxels."""
    values = data[np.isfinite(data) & (data != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    if not math.isfinite(hi - lo) or hi <= lo:
        return lo - 0.5, lo + 0.5
    return lo, hi


def crop_in_plane(volumes: CaseVolumes, *, margin: int = 4) -> CaseVolumes:
    """A copy cropped in X and Y to the brain (non-zero image voxels, any slice) plus masks.

    Real scans put the brain in a fraction of the field of view (BraTS: about 140 of 240
    voxels); cropping every panel to the same box makes the tumour readable. Z is kept, so
    slice indices do not change. Nothing to crop to: the volumes are returned unchanged.
    """
    arrays = [v != 0 for v in volumes.images.values()]
    arrays += [m > 0 for m in (volumes.prediction, volumes.reference) if m is not None]
    if volumes.probs is not None:
        arrays.append(volumes.probs.max(axis=0) > 0)
    if not arrays:
        return volumes
    plane = np.any([a.any(axis=2) for a in arrays], axis=0)
    if not plane.any():
        return volumes
    (x0, y0), (x1, y1) = np.argwhere(plane).min(axis=0), np.argwhere(plane).max(axis=0) + 1
    box = (
        slice(max(int(x0) - margin, 0), int(x1) + margin),
        slice(max(int(y0) - margin, 0), int(y1) + margin),
    )

    def cut(a: Any) -> Any:
        return None if a is None else np.ascontiguousarray(a[..., box[0], box[1], :])

    return replace(
        volumes,
        images={k: cut(v) for k, v in volumes.images.items()},
        prediction=cut(volumes.prediction),
        reference=cut(volumes.reference),
        probs=cut(volumes.probs),
    )
