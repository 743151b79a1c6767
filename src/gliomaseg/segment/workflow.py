"""``gliomaseg segment``: whole cases in, masks in the input's geometry plus summaries out.

For each case: read and canonicalise, z-score each modality in the brain and crop to it
(exactly as ``prepare`` does for training), predict every axial slice in batches, undo the
crop and the reorientation, postprocess, and write atomically:

* ``<case>_seg.nii.gz``: the input's shape, affine and header geometry, in the input's label
  scheme (or ``--labels``);
* ``<case>_summary.json``: volumes (mL) per label and region, components, bounding box and
  extents (mm), centroid (voxel and scanner mm), hemisphere, per-slice maximum tumour
  probability and uncertainty, and the review flags: a short ranked list of the slices most
  likely to be wrong and a case confidence (:mod:`gliomaseg.segment.uncertainty`; ``review``,
  ``flagged_slices``); voxel positions are indices of the input file's array, mm positions
  scanner RAS+ (``coordinates`` in the summary says so); ``training_case`` says whether the
  case is one the model was trained on (model card);
* optionally ``<case>_probs.nii.gz`` (one volume per output channel, 0-1 in uint8 steps);
* for LGG TIFF stacks, ``<patient>/<slice>_pred.tif`` per input slice (0/255) as well.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.core.case import Case
from gliomaseg.core.errors import failure_message
from gliomaseg.core.geometry import reorient, reorient_affine
from gliomaseg.core.labels import LabelScheme, get_scheme
from gliomaseg.io.atomic import atomic_path, write_json_atomic
from gliomaseg.io.cache import NETWORK_AXES
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.layouts import discover_all, read_case
from gliomaseg.io.nifti import write_nifti
from gliomaseg.io.outdir import OutputFolder, check_location
from gliomaseg.io.outputs import segment_outputs
from gliomaseg.io.segmentation import write_segmentation
from gliomaseg.models.inference import predict_volume, predict_volume_3d
from gliomaseg.prepare.crop import uncrop
from gliomaseg.prepare.workflow import model_input
from gliomaseg.segment.config import SegmentConfig
from gliomaseg.segment.models import (
    INPUT_KINDS,
    Segmenter,
    check_model_fits,
    default_model,
    postprocess_config,
)
from gliomaseg.segment.postprocess import postprocess
from gliomaseg.segment.summary import summarise
from gliomaseg.segment.uncertainty import Disagreement

log = logging.getLogger(__name__)


def predict_case(
    case: Case, seg: Segmenter, config: SegmentConfig, *, observe: Disagreement | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Label map (X, Y, Z) internal codes and probabilities (K, X, Y, Z) on the canonical grid.

    ``observe`` collects the ensemble members' and flips' disagreement (2D models).
    """
    view = network_view(case, seg.axes)
    volume, crop, _ = model_input(view, modalities=seg.modalities, margin=config.margin)
    if observe is not None:
        observe.z_start = crop.start[2]
    if seg.spatial_dims == 3:
        probs = predict_volume_3d(
            seg.model,
            volume,
            target=seg.target,
            roi_size=seg.roi_size,
            device=seg.device,
            amp=seg.bf16(config),
        )
    else:
        probs = predict_volume(
            seg.model,
            volume,
            target=seg.target,
            multiple=seg.multiple,
            batch_size=config.batch_size,
            context=seg.context,
            device=seg.device,
            amp=seg.bf16(config),
            tta=config.tta,
            channels_last=True,
            input_scale=seg.input_scale,
            observe=observe,
        )
    probs = np.moveaxis(probs, 1, -1)  # (K, x, y, Z)
    label = uncrop(seg.target.decode(probs), crop)
    full = uncrop(probs, crop)
    if seg.target.kind == "softmax":  # outside the brain is certainly background
        background = [k for k, g in enumerate(seg.target.groups) if 0 in g]
        outside = ~np.zeros(view.shape, bool)
        outside[crop.slices] = False
        for k in background:
            full[k][outside] = 1.0
    label = reorient(label, seg.axes, NETWORK_AXES)
    return label.astype(np.uint8), reorient(full, seg.axes, NETWORK_AXES)


def network_view(case: Case, axes: str) -> Case:
    """The case with its arrays reoriented from canonical RAS+ to a model's training ``axes``.

    A model trained on arrays in other axes (the bundled ``lgg`` model: TIFF-order stacks)
    would otherwise see its slices rotated by 90 degrees.
    """
    if axes == NETWORK_AXES:
        return case

    def turn(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else reorient(array, NETWORK_AXES, axes)

    return replace(
        case,
        image=turn(case.image),
        label=turn(case.label),
        brain_mask=turn(case.brain_mask),
        affine=reorient_affine(case.affine, case.shape, NETWORK_AXES, axes),
    )


def outputs_for(ref: CaseRef, out_dir: Path, config: SegmentConfig | None = None) -> list[Path]:
    """The files (and, for LGG, the slice folder) a finished case has in ``out_dir``.

    The summary comes last: it is written last, so it marks a finished case.
    """
    slices = [out_dir / ref.case_id] if ref.layout == "lgg-tiff" else []
    probabilities = config is not None and config.save_probabilities
    return [*slices, *segment_outputs(ref.case_id, out_dir).written(probabilities=probabilities)]


#: The stages of one case that ``segment_case`` reports to its ``stage`` callback.
STAGES = ("read", "infer", "postprocess", "write")
#: The stages :func:`segment_inputs` reports after a case ends: written, or failed (its error
#: line follows at the end of the batch).
DONE, FAILED = "done", "failed"
#: ``progress(index, n_cases, case_id, stage)``: the batch's ``index``-th case (from 0) of
#: ``n_cases`` to segment enters ``stage`` (each of :data:`STAGES`, then :data:`DONE` or
#: :data:`FAILED`).
Progress = Callable[[int, int, str, str], None]


def segment_case(
    ref: CaseRef,
    out: OutputFolder,
    seg: Segmenter,
    config: SegmentConfig,
    *,
    stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Segment one case and write its outputs; returns the summary.

    Every output is checked (never replaces a file gliomaseg did not write), entered in the
    folder's manifest, then written atomically; the summary is written last. ``stage`` is
    called with each name of :data:`STAGES` as that stage starts (a progress display).
    """
    start = time.perf_counter()
    say = stage or (lambda name: None)
    paths = outputs_for(ref, out.root, config)
    out.check_writable(*paths)
    say("read")
    case = read_case(ref, with_label=False)
    check_model_fits(case, seg, ref)
    say("infer")
    disagreement = Disagreement(seg.target)
    label, probs = predict_case(case, seg, config, observe=disagreement)
    say("postprocess")
    label, record = postprocess(
        label, voxel_ml=case.voxel_volume_ml, config=postprocess_config(seg, config)
    )
    if record["skipped"] and config.postprocess is not None:  # the user's own thresholds
        log.warning("%s: postprocessing %s", ref.case_id, record["skipped"])
    summary = summarise(case, label, probs, seg, config, record, disagreement=disagreement)
    scheme = output_scheme(case, seg, config)
    say("write")
    out.record(*paths)
    if ref.layout == "lgg-tiff":
        _write_lgg_slices(case, label, out.root / ref.case_id)
    names = segment_outputs(ref.case_id, out.root)
    if config.save_probabilities:
        _write_probabilities(case, probs, names.probs)
    write_segmentation(case, label, names.seg, scheme=scheme)
    summary["label_scheme"] = scheme.name
    summary["seconds"] = round(time.perf_counter() - start, 3)
    write_json_atomic(names.summary, summary)
    return summary


def output_scheme(case: Case, seg: Segmenter, config: SegmentConfig) -> LabelScheme:
    """The label scheme of ``<case>_seg.nii.gz``: ``--labels``, else the input's, else the
    model's natural one (``lgg`` for a binary model on LGG TIFFs, else ``brats2020``)."""
    if config.labels != "input":
        return get_scheme(config.labels)
    if case.scheme is not None:
        return case.scheme
    return get_scheme(
        "lgg" if seg.target.channels == 1 and case.layout == "lgg-tiff" else "brats2020"
    )


def _write_probabilities(case: Case, probs: np.ndarray, path: Path) -> None:
    """(X, Y, Z, K) probabilities on the input grid.

    NIfTI has no float16, so probabilities are stored as uint8 (p * 255, rounded) with
    ``scl_slope = 1/255``: viewers and nibabel's ``get_fdata`` show 0-1 floats (step 0.004),
    at a quarter of float32's size.
    """
    quantised = np.rint(np.clip(probs, 0.0, 1.0) * 255).astype(np.uint8)
    back = case.to_source(quantised)
    affine = case.source_affine if case.source_affine is not None else case.affine
    write_nifti(path, np.moveaxis(back, 0, -1), affine, dtype=np.uint8, slope=1.0 / 255)


def _write_lgg_slices(case: Case, label: np.ndarray, folder: Path) -> None:
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rows_cols = (
        np.asarray(case.to_source(label)) != 0
    )  # back to the TIFFs' own (row, column, slice) order
    for z, name in enumerate(case.slice_names):
        with atomic_path(folder / f"{name}_pred.tif") as tmp:
            tifffile.imwrite(tmp, np.where(rows_cols[:, :, z], 255, 0).astype(np.uint8))


@dataclass
class BatchResult:
    """What :func:`segment_inputs` did: case ids segmented and skipped, ``(path, message)``
    per failure."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def segment_inputs(
    inputs: list[Path],
    out_dir: Path,
    *,
    model: str | Path | None,
    config: SegmentConfig,
    part: tuple[int, int] = (1, 1),
    progress: Progress | None = None,
) -> BatchResult:
    """Segment every case under ``inputs``; one bad case is recorded and the rest go on.

    ``model=None`` picks the bundled model per case from its modalities
    (:func:`default_model`) and logs the choice. ``progress`` is told each case's stages
    (:data:`Progress`); the command line draws a bar from it.
    """
    refs, bad = discover_all(inputs, cases_only=True)  # case ids unique across inputs
    result = BatchResult(failures=[(str(p), msg) for p, msg in bad])
    i, n = part
    refs = sorted(refs, key=lambda r: (r.case_id, str(r.path)))[i - 1 :: n]
    check_location(out_dir, [r.path for r in refs], data_paths=inputs)
    out = OutputFolder(out_dir, overwrite=config.overwrite)
    todo = []
    for ref in refs:
        paths = outputs_for(ref, out_dir, config)
        if not config.overwrite and all(p.exists() for p in paths) and out.owns(*paths):
            result.skipped.append(ref.case_id)
        else:
            todo.append(ref)
    if not todo:
        return result
    chosen = {ref.case_id: model if model is not None else default_model(ref) for ref in todo}
    models = {}
    for name in dict.fromkeys(chosen.values()):
        if model is None:
            log.info("using the bundled %s model for %s", name, INPUT_KINDS.get(str(name), name))
        models[name] = Segmenter.load(name, device=config.device)
    report = progress or _no_progress
    for index, ref in enumerate(todo):
        stage = partial(report, index, len(todo), ref.case_id)
        try:
            segment_case(ref, out, models[chosen[ref.case_id]], config, stage=stage)
            result.done.append(ref.case_id)
            stage(DONE)
        except Exception as err:  # the per-case boundary: one bad case never stops a batch
            log.debug("%s failed", ref.path, exc_info=True)
            result.failures.append((str(ref.path), failure_message(err)))
            stage(FAILED)
    return result


def _no_progress(index: int, n_cases: int, case_id: str, stage: str) -> None:
    """The :data:`Progress` callback that shows nothing."""
