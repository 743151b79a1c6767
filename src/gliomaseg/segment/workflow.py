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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.core.case import Case
from gliomaseg.core.geometry import reorient, reorient_affine
from gliomaseg.core.labels import LabelScheme, get_scheme
from gliomaseg.io.atomic import atomic_path, write_json_atomic
from gliomaseg.io.cache import NETWORK_AXES
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.layouts import read_case
from gliomaseg.io.nifti import write_nifti
from gliomaseg.io.outdir import OutputFolder
from gliomaseg.io.outputs import segment_outputs
from gliomaseg.io.segmentation import write_segmentation
from gliomaseg.models.inference import predict_volume, predict_volume_3d
from gliomaseg.prepare.crop import uncrop
from gliomaseg.prepare.workflow import model_input
from gliomaseg.segment.config import SegmentConfig
from gliomaseg.segment.models import Segmenter, check_model_fits, postprocess_config
from gliomaseg.segment.plan import outputs_for
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
            seg.network(config),
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


def segment_case(
    ref: CaseRef,
    out: OutputFolder,
    seg: Segmenter,
    config: SegmentConfig,
    *,
    stage: Callable[[str], None] | None = None,
    read: Callable[[], Case] | None = None,
) -> dict[str, Any]:
    """Segment one case and write its outputs; returns the summary.

    Every output is checked (never replaces a file gliomaseg did not write), entered in the
    folder's manifest, then written atomically; the summary is written last. ``stage`` is
    called with each name of :data:`gliomaseg.segment.plan.STAGES` as that stage starts (a
    progress display). ``read`` gives the case already read elsewhere (a
    :class:`gliomaseg.segment.batch.CaseReader`); by default it is read here.
    """
    start = time.perf_counter()
    say = stage or (lambda name: None)
    paths = outputs_for(ref, out.root, config)
    out.check_writable(*paths)
    say("read")
    case = read() if read is not None else read_case(ref, with_label=False)
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
