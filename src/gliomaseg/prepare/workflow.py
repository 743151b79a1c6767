"""``gliomaseg prepare``: preprocess a dataset once into a memory-mappable cache.

The cache's layout and its reading side are :mod:`gliomaseg.io.cache`. Each case folder is
written under a temporary name and renamed when complete, so an interrupted run resumes by
skipping finished cases, and peak memory is that of one case however large the dataset.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg import __version__
from gliomaseg.core.case import Case
from gliomaseg.core.errors import failure_message
from gliomaseg.io.atomic import remove_orphans, temporary_dir, write_json_atomic
from gliomaseg.io.cache import (
    CACHE_FORMAT,
    CASE_IMAGE,
    CASE_LABEL,
    CASE_META,
    NETWORK_AXES,
    case_axes,
    case_dir,
)
from gliomaseg.io.caseref import CaseRef, LayoutConfig
from gliomaseg.io.layouts import discover_all, read_case
from gliomaseg.io.naming import tcga_site
from gliomaseg.io.outdir import OutputFolder, check_location
from gliomaseg.io.outputs import CACHE_CASES, CACHE_INDEX
from gliomaseg.prepare.crop import CropInfo, crop_to_brain
from gliomaseg.prepare.normalize import zscore
from gliomaseg.prepare.splits import kfold_patients

log = logging.getLogger(__name__)

_GLI = re.compile(r"^BraTS-GLI-(\d{5})-\d{3}$")
_H5_PATIENT = re.compile(r"^volume_(\d+)$")
_BRATS_SOURCE = re.compile(r"^Bra[Tt][Ss]\d\d_(CBICA|TCIA|2013)", re.IGNORECASE)


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of a prepared cache (saved in ``index.json``).

    Attributes:
        modalities: Channels to keep, in order; None keeps the first case's modalities and
            requires every other case to have them.
        margin: Voxels of background kept around the brain bounding box.
        dtype: On-disk image dtype (float16 halves the size; z-scores fit it easily).
        folds: Number of patient-level folds stored in the index (0 for none).
        seed: Seed of the fold assignment.
        label_scheme: Override of the layouts' label scheme.
    """

    modalities: tuple[str, ...] | None = None
    margin: int = 2
    dtype: str = "float16"
    folds: int = 5
    seed: int = 0
    label_scheme: str | None = None


@dataclass
class PrepareResult:
    """What a prepare run did."""

    cache: Path
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    n_cases: int = 0
    n_slices: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "cache": str(self.cache),
            "cases_in_cache": self.n_cases,
            "slices_in_cache": self.n_slices,
            "prepared_now": len(self.prepared),
            "skipped_existing": len(self.skipped),
            "failed": [{"path": p, "error": e} for p, e in self.failures],
            "seconds": round(self.seconds, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


def patient_of(ref: CaseRef) -> str:
    """Patient id used for splits.

    BraTS 2023 glioma ids are BraTS 2021 ids renamed (``BraTS-GLI-00000-000`` is
    ``BraTS2021_00000``), and Kaggle HDF5 ``volume_7`` is ``BraTS20_Training_007``: both are
    mapped onto one patient so the same subject can never sit in two folds.
    """
    pid = ref.patient or ref.case_id
    if m := _GLI.match(pid):
        return f"BraTS2021_{m.group(1)}"
    if m := _H5_PATIENT.match(pid):
        return f"BraTS20_Training_{int(m.group(1)):03d}"
    return pid


def stratum_of(patient: str) -> str:
    """Stratum for splits: the acquiring source, so every fold mixes institutions.

    LGG: the TCGA institution code (``TCGA_CS_...`` -> ``CS``). BraTS: the contributing
    collection read from the id (``CBICA``, ``TCIA``, ``2013`` for BraTS 2017-2020 names such
    as ``Brats18_TCIA02_135_1``; ``2021`` for ``BraTS2021_*``). Anything else: ``""``.
    """
    if patient.startswith("TCGA_") and (site := tcga_site(patient)):
        return site
    if m := _BRATS_SOURCE.search(patient):
        return m.group(1).upper()
    if patient.startswith("BraTS2021_"):
        return "2021"
    return ""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_input(
    case: Case, *, modalities: tuple[str, ...], margin: int
) -> tuple[np.ndarray, CropInfo, np.ndarray]:
    """The network's view of a case, the same for training (``prepare``) and ``segment``.

    Each modality is z-scored over the brain (the shipped brain mask, else voxels nonzero in
    any channel), then the volume is cropped to the brain's bounding box plus ``margin``.

    Returns:
        image (Z, C, x, y) float32 slice-major; the crop (undo with
        :func:`~gliomaseg.prepare.crop.uncrop`); the (X, Y, Z) brain mask.

    Raises:
        ValueError: the case lacks one of ``modalities`` (named).
    """
    image = case.channels(modalities)
    brain = case.brain_mask if case.brain_mask is not None else np.any(image != 0, axis=0)
    cropped, _, crop = crop_to_brain(zscore(image, mask=brain), mask=brain, margin=margin)
    return np.ascontiguousarray(np.moveaxis(cropped, -1, 0)), crop, brain


def prepare_case(
    case: Case, *, modalities: tuple[str, ...], margin: int
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Preprocess one canonical case for training.

    Returns:
        image (Z, C, x, y) float32 z-scored over the brain and cropped to it; label
        (Z, x, y) uint8 or None; metadata (crop box, geometry, per-slice counts).
    """
    image_zcxy, crop, brain = model_input(case, modalities=modalities, margin=margin)
    label_zxy = None
    if case.label is not None:
        label_zxy = np.ascontiguousarray(np.moveaxis(case.label[crop.slices], -1, 0))
    brain_c = brain[crop.slices]
    meta: dict[str, Any] = {
        "case_id": case.case_id,
        "layout": case.layout,
        "modalities": list(modalities),
        "scheme": case.scheme.name if case.scheme else None,
        "crop": crop.to_dict(),
        "canonical_shape": list(case.shape),
        "affine": np.asarray(case.affine).tolist(),
        "source_affine": None
        if case.source_affine is None
        else np.asarray(case.source_affine).tolist(),
        "source_shape": list(case.source_shape) if case.source_shape else None,
        "spacing_mm": list(case.spacing),
        "spacing_known": case.spacing_known,
        "axes": NETWORK_AXES,
        "slice_names": list(case.slice_names),
        "brain_pixels": brain_c.sum(axis=(0, 1)).astype(int).tolist(),
        "tumour_pixels": (label_zxy > 0).sum(axis=(1, 2)).astype(int).tolist()
        if label_zxy is not None
        else None,
        "source": case.source,
    }
    return image_zcxy, label_zxy, meta


def _write_case_dir(
    out: OutputFolder,
    case_id: str,
    image: np.ndarray,
    label: np.ndarray | None,
    meta: dict[str, Any],
) -> None:
    """Write one case folder under a temporary name, then rename it into place.

    Only a case folder gliomaseg wrote earlier (in the cache's manifest) is ever replaced.
    """
    final = case_dir(out.root, case_id)
    out.check_owned(final)
    out.record(final)
    tmp = temporary_dir(final.parent)
    try:
        np.save(tmp / CASE_IMAGE, image)
        if label is not None:
            np.save(tmp / CASE_LABEL, label)
        (tmp / CASE_META).write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare_dataset(
    data: str | Path,
    cache: str | Path,
    *,
    config: PrepareConfig = PrepareConfig(),
    layout_config: LayoutConfig | None = None,
    overwrite: bool = False,
    progress: bool = False,
    track: Callable[[list[CaseRef]], Iterable[CaseRef]] | None = None,
) -> PrepareResult:
    """Preprocess every case under ``data`` into ``cache`` (resumable, one case in RAM).

    A case that fails to read is reported in ``failures`` and the others go on. Progress:
    ``track`` wraps the list of cases (the command line's bar), else with ``progress`` one
    log line per case.

    Raises:
        FileNotFoundError / ValueError: ``data`` missing or holding no case; a cache written
            with other settings (pass ``--overwrite`` or another folder).
    """
    # Over 60 lines by its docstring; the body is one loop with the per-case error boundary.
    start = time.perf_counter()
    cache = Path(cache)
    # Loose single files (label maps beside a case, templates) are not training cases.
    found, bad = discover_all([data], config=layout_config, cases_only=True)
    refs = [r for r in found if r.layout != "nifti-file"]
    if not refs and not bad:
        raise ValueError(f"{data}: no image cases to prepare (only loose NIfTI files found)")
    check_location(cache, [r.path for r in refs], data_paths=[data])
    out = OutputFolder(cache, overwrite=overwrite)
    out.check_owned(cache / CACHE_INDEX)
    remove_orphans(cache / CACHE_CASES)
    _check_existing_settings(cache, config, overwrite)
    result = PrepareResult(cache=cache, failures=[(str(p), msg) for p, msg in bad])
    modalities = config.modalities
    entries: dict[str, dict[str, Any]] = {}
    for ref in track(refs) if track is not None else _iterate(refs, progress):
        folder = case_dir(cache, ref.case_id)
        try:
            if (folder / CASE_META).exists() and out.owns(folder) and not overwrite:
                meta = json.loads((folder / CASE_META).read_text())
                result.skipped.append(ref.case_id)
            else:
                case = read_case(ref, label_scheme=config.label_scheme)
                modalities = modalities or case.modalities
                image, label, meta = prepare_case(case, modalities=modalities, margin=config.margin)
                del case
                meta.update(patient=patient_of(ref), stratum=stratum_of(patient_of(ref)))
                _write_case_dir(out, ref.case_id, image.astype(config.dtype), label, meta)
                del image, label
                result.prepared.append(ref.case_id)
            modalities = modalities or tuple(meta["modalities"])
            entries[ref.case_id] = meta
        except Exception as err:  # the per-case boundary: one bad case never stops a batch
            log.debug("%s failed", ref.path, exc_info=True)
            result.failures.append((str(ref.path), failure_message(err)))
    if entries:  # nothing at all is written when every case failed
        out.record(cache / CACHE_INDEX)
        _write_index(cache, entries, config, modalities, data)
    result.n_cases = len(entries)
    result.n_slices = sum(len(m["brain_pixels"]) for m in entries.values())
    result.seconds = time.perf_counter() - start
    result.peak_rss_mb = peak_rss_mb()
    return result


def _iterate(refs: list[CaseRef], progress: bool) -> Iterator[CaseRef]:
    for i, ref in enumerate(refs, 1):
        if progress:
            log.info("prepare %d/%d: %s", i, len(refs), ref.case_id)
        yield ref


def _check_existing_settings(cache: Path, config: PrepareConfig, overwrite: bool) -> None:
    index = cache / CACHE_INDEX
    if not index.exists() or overwrite:
        return
    old = json.loads(index.read_text()).get("config", {})
    new = json.loads(json.dumps(asdict(config)))
    if old and old != new:
        raise ValueError(
            f"{cache}: cache was prepared with other settings ({old}); "
            "use --overwrite or another output folder"
        )


def _write_index(
    cache: Path,
    entries: dict[str, dict[str, Any]],
    config: PrepareConfig,
    modalities: tuple[str, ...] | None,
    data: str | Path,
) -> None:
    axes = {case_axes(m) for m in entries.values()}
    if len(axes) > 1:
        raise ValueError(
            f"{cache}: holds cases prepared by an older gliomaseg in another orientation "
            f"({', '.join(sorted(axes))}); prepare it again with --overwrite"
        )
    patients = sorted({m["patient"] for m in entries.values()})
    strata = {m["patient"]: m["stratum"] for m in entries.values()}
    folds: list[dict[str, list[str]]] = []
    if config.folds and len(patients) >= config.folds >= 2:
        folds = [
            {"train": tr, "val": va}
            for tr, va in kfold_patients(patients, config.folds, seed=config.seed, strata=strata)
        ]
    index = {
        "format": CACHE_FORMAT,
        "gliomaseg_version": __version__,
        "source": str(Path(data).resolve()),
        "config": asdict(config),
        "modalities": list(modalities or ()),
        "axes": axes.pop(),
        "cases": [
            {
                "case_id": cid,
                "patient": m["patient"],
                "stratum": m["stratum"],
                "n_slices": len(m["brain_pixels"]),
                "labelled": m["tumour_pixels"] is not None,
                "tumour_slices": sum(1 for t in (m["tumour_pixels"] or []) if t > 0),
            }
            for cid, m in sorted(entries.items())
        ],
        "folds": folds,
    }
    write_json_atomic(cache / CACHE_INDEX, index)
