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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomaseg import __version__
from gliomaseg.core.case import Case
from gliomaseg.core.errors import InputError, failure_message
from gliomaseg.core.geometry import reorient, reorient_affine
from gliomaseg.core.labels import get_scheme
from gliomaseg.core.targets import TargetSpec
from gliomaseg.io.atomic import atomic_path, write_json_atomic
from gliomaseg.io.cache import NETWORK_AXES, network_axes
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.layouts import discover_all, read_case
from gliomaseg.io.outdir import OutputFolder, check_location
from gliomaseg.io.segmentation import write_segmentation
from gliomaseg.prepare.crop import uncrop
from gliomaseg.prepare.workflow import model_input
from gliomaseg.segment.postprocess import (
    COORDINATES,
    PostprocessConfig,
    postprocess,
    region_volumes,
    tumour_geometry,
)
from gliomaseg.segment.uncertainty import Disagreement
from gliomaseg.train.bundle import model_training_cases, training_case_record
from gliomaseg.train.runs import resolve_device

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class SegmentConfig:
    """Options of a segment run."""

    device: str = "auto"
    tta: bool = False
    save_probabilities: bool = False
    #: Uncertainty score at/above which a slice is flagged (None: the validated default,
    #: :data:`gliomaseg.segment.uncertainty.DEFAULT_THRESHOLD`).
    flag_threshold: float | None = None
    labels: str = "input"
    batch_size: int = 32
    margin: int = 2
    amp: bool = False
    overwrite: bool = False
    #: None: the model's own recommendation (tuned in cross-validation, stored when bundled),
    #: else no postprocessing.
    postprocess: PostprocessConfig | None = None


@dataclass
class Segmenter:
    """A loaded network plus what it needs to know about its inputs."""

    model: torch.nn.Module
    target: TargetSpec
    modalities: tuple[str, ...]
    context: int
    multiple: int
    spatial_dims: int
    roi_size: tuple[int, ...]
    device: torch.device
    source: str
    meta: dict[str, Any]
    #: In-plane factor the (2D) model was trained at; slices are resized by it and back.
    input_scale: float = 1.0
    #: Axes of the arrays the model was trained on (:func:`gliomaseg.io.cache.network_axes`);
    #: cases are reoriented to them for the network and back.
    axes: str = NETWORK_AXES

    @classmethod
    def load(cls, model: str | Path, *, device: str = "auto") -> Segmenter:
        """From a checkpoint path or the name of a bundled model (``gliomaseg models``)."""
        from gliomaseg.models import ModelConfig, input_multiple
        from gliomaseg.models.checkpoint import input_scale, load_model

        path = resolve_model(model)
        dev = resolve_device(device)
        from gliomaseg.models.inference import fuse_batch_norm, instance_norm_as_group_norm

        net, meta = load_model(path, device=dev)
        net = instance_norm_as_group_norm(fuse_batch_norm(net))
        if int(meta["model_config"].get("spatial_dims", 2)) == 2:
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return cls(
            model=net,
            target=TargetSpec.from_dict(meta["target"]),
            modalities=tuple(meta["modalities"]),
            context=int(meta.get("context", 0)),
            multiple=input_multiple(ModelConfig.from_dict(meta["model_config"])),
            input_scale=input_scale(meta),
            spatial_dims=int(meta["model_config"].get("spatial_dims", 2)),
            roi_size=tuple(meta.get("train_config", {}).get("patch_size", ())),
            device=dev,
            source=str(path),
            meta=meta,
            axes=network_axes(meta),
        )


def postprocess_config(seg: Segmenter, config: SegmentConfig) -> PostprocessConfig:
    """The user's postprocessing if given, else the model's recommendation, else none."""
    if config.postprocess is not None:
        return config.postprocess
    return PostprocessConfig(**seg.meta.get("postprocess", {}))


#: What each bundled model is chosen for when ``--model`` is not given (in stderr lines).
_INPUT_KINDS = {"lgg": "LGG TIFF input", "brats": "four-modality (FLAIR, T1, T1c, T2) input"}


def default_model(ref: CaseRef) -> str:
    """The bundled model that fits a case's modalities when the user names none.

    LGG TIFF stacks hold pre-contrast, FLAIR and post-contrast (no T2): the ``lgg`` model;
    every other layout gives the four BraTS modalities: ``brats``.
    """
    return "lgg" if ref.layout == "lgg-tiff" else "brats"


def check_model_fits(case: Case, seg: Segmenter, ref: CaseRef) -> None:
    """Refuse a model that needs a modality the case lacks, suggesting a bundled one that fits.

    Raises:
        InputError: one line naming the case, the missing modalities and the fix.
    """
    missing = [m for m in seg.modalities if m not in case.modalities]
    if not missing:
        return
    fits = [
        name
        for name, mods in bundled_modalities().items()
        if mods and set(mods) <= set(case.modalities)
    ]
    fix = (
        f"use --model {fits[0]} (or leave --model out: the bundled model that fits is chosen)"
        if fits
        else "pass a model trained on the modalities the case has (--model CHECKPOINT)"
    )
    raise InputError(
        f"{ref.path}: the model {Path(seg.source).stem} needs {', '.join(seg.modalities)} but "
        f"this {ref.layout} case has {', '.join(case.modalities)} (no {', '.join(missing)}); {fix}"
    )


def bundled_modalities() -> dict[str, tuple[str, ...]]:
    """Bundled model name -> its input modalities, from the model cards."""
    import json

    out = {}
    for card in sorted(WEIGHTS_DIR.glob("*.json")):
        try:
            out[card.stem] = tuple(json.loads(card.read_text()).get("input_channels", ()))
        except (OSError, ValueError):
            continue
    return out


def resolve_model(model: str | Path) -> Path:
    """A checkpoint path, a training run folder (:func:`run_checkpoint`), or a bundled
    model name resolved inside the package."""
    path = Path(model)
    if path.is_dir():
        return run_checkpoint(path)
    if path.suffix == ".pt" or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such model checkpoint")
        return path
    bundled = WEIGHTS_DIR / f"{model}.pt"
    if not bundled.exists():
        names = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
        raise ValueError(
            f"no bundled model '{model}' (bundled: {names or 'none yet'}); pass a checkpoint path "
            "from 'gliomaseg train' (RUN_DIR/checkpoints/best.pt)"
        )
    return bundled


def run_checkpoint(folder: Path) -> Path:
    """The checkpoint a training run folder stands for, logging which.

    A ``--cv`` run's ``model.pt`` (its fold ensemble), else the run's
    ``checkpoints/best.pt`` (the best validation epoch; the last epoch without validation),
    else ``checkpoints/last.pt``; ``RUN/checkpoints`` itself works too.

    Raises:
        InputError: a folder without any of them (one line saying what to pass).
    """
    candidates = (
        (folder / "model.pt", "the fold ensemble of this --cv run"),
        (folder / "checkpoints" / "best.pt", "the run's best validation epoch"),
        (folder / "checkpoints" / "last.pt", "the run's last epoch (no best.pt yet)"),
        (folder / "best.pt", "the run's best validation epoch"),
        (folder / "last.pt", "the run's last epoch (no best.pt yet)"),
    )
    for path, what in candidates:
        if path.is_file():
            log.info("--model %s is a training run folder: using %s, %s", folder, path, what)
            return path
    if any(folder.glob("fold*/checkpoints/last.pt")):
        raise InputError(
            f"{folder}: a --cv run without its ensemble yet (no model.pt); rerun its 'gliomaseg "
            f"train --cv' command to finish it, or pass one fold, e.g. {folder / 'fold0'}"
        )
    raise InputError(
        f"{folder}: a folder without a model (no model.pt or checkpoints/best.pt); pass a "
        "checkpoint .pt, a training run folder or a bundled model name (gliomaseg models)"
    )


def predict_case(
    case: Case, seg: Segmenter, config: SegmentConfig, *, observe: Disagreement | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Label map (X, Y, Z) internal codes and probabilities (K, X, Y, Z) on the canonical grid.

    ``observe`` collects the ensemble members' and flips' disagreement (2D models).
    """
    from gliomaseg.models.inference import predict_volume, predict_volume_3d

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
            amp=config.amp,
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
            amp=config.amp,
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


def tumour_probability(probs: np.ndarray, target: TargetSpec) -> np.ndarray:
    """(X, Y, Z) probability that a voxel is tumour (any non-background output)."""
    if target.kind == "softmax":
        background = [k for k, g in enumerate(target.groups) if 0 in g]
        return 1.0 - probs[background].sum(axis=0)
    return probs.max(axis=0)


def summarise(
    case: Case,
    label: np.ndarray,
    probs: np.ndarray,
    seg: Segmenter,
    config: SegmentConfig,
    record: dict[str, Any],
    *,
    disagreement: Disagreement | None = None,
) -> dict[str, Any]:
    """The ``<case>_summary.json`` content."""
    tumour_p = tumour_probability(probs, seg.target)
    per_slice = tumour_p.reshape(-1, tumour_p.shape[-1]).max(axis=0)
    names = list(case.slice_names) or [str(z) for z in range(per_slice.size)]
    flags = review_fields(case, tumour_p, label, seg, config, names, disagreement)
    binary = bool(case.scheme.binary) if case.scheme else seg.target.channels == 1
    return {
        "case_id": case.case_id,
        "gliomaseg_version": __version__,
        "layout": case.layout,
        "inputs": dict(case.source),
        "model": seg.source,
        "modalities": list(seg.modalities),
        "outputs": list(seg.target.names),
        "spacing_mm": [round(s, 6) for s in case.spacing],
        "spacing_known": case.spacing_known,
        "voxel_volume_ml": case.voxel_volume_ml,
        "volumes_ml": region_volumes(label, case.voxel_volume_ml, binary=binary),
        **tumour_geometry(
            label,
            case.affine,
            brain=case.brain_mask,
            to_input=case.source_indices,
            image=case.image,
            orientation_known=case.orientation_known,
        ),
        "coordinates": COORDINATES,
        "postprocessing": record,
        "training_case": training_case_record(
            model_training_cases(seg.source, seg.meta), case.case_id, case.meta.get("patient", "")
        ),
        "tta": config.tta,
        "flag_threshold": flags["review"]["threshold"],
        "slices": [
            {
                "slice": n,
                "index": z,
                "max_tumour_probability": round(float(p), 4),
                "uncertainty": round(float(u), 4),
            }
            for z, (n, p, u) in enumerate(zip(names, per_slice, flags["scores"], strict=True))
        ],
        "review": flags["review"],
        "flagged_slices": [f["slice"] for f in flags["review"]["flags"]],
    }


def review_fields(
    case: Case,
    tumour_p: np.ndarray,
    label: np.ndarray,
    seg: Segmenter,
    config: SegmentConfig,
    names: list[str],
    disagreement: Disagreement | None,
) -> dict[str, Any]:
    """Review flags and case confidence (:func:`gliomaseg.segment.uncertainty.review`)."""
    from gliomaseg.segment.uncertainty import review, source_slice_index

    axis, index = source_slice_index(case)
    sx, sy, _ = case.spacing
    return review(
        tumour_p,
        label > 0,
        pixel_mm2=sx * sy,
        names=names,
        input_index=index,
        input_axis=axis,
        disagreement=disagreement,
        input_scale=seg.input_scale,
        threshold=config.flag_threshold,
    )


def outputs_for(ref: CaseRef, out_dir: Path, config: SegmentConfig | None = None) -> list[Path]:
    """The files (and, for LGG, the slice folder) a finished case has in ``out_dir``.

    The summary comes last: it is written last, so it marks a finished case.
    """
    paths = []
    if ref.layout == "lgg-tiff":
        paths.append(out_dir / ref.case_id)
    if config is not None and config.save_probabilities:
        paths.append(out_dir / f"{ref.case_id}_probs.nii.gz")
    return [*paths, out_dir / f"{ref.case_id}_seg.nii.gz", out_dir / f"{ref.case_id}_summary.json"]


#: The stages of one case that ``segment_case`` reports to its ``stage`` callback.
STAGES = ("read", "infer", "postprocess", "write")


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
    scheme = case.scheme if config.labels == "input" and case.scheme is not None else None
    if config.labels != "input":
        scheme = get_scheme(config.labels)
    if scheme is None:
        scheme = get_scheme(
            "lgg" if seg.target.channels == 1 and case.layout == "lgg-tiff" else "brats2020"
        )
    say("write")
    out.record(*paths)
    if ref.layout == "lgg-tiff":
        _write_lgg_slices(case, label, out.root / ref.case_id)
    if config.save_probabilities:
        _write_probabilities(case, probs, out.root / f"{ref.case_id}_probs.nii.gz")
    write_segmentation(case, label, out.root / f"{ref.case_id}_seg.nii.gz", scheme=scheme)
    summary["label_scheme"] = scheme.name
    summary["seconds"] = round(time.perf_counter() - start, 3)
    write_json_atomic(out.root / f"{ref.case_id}_summary.json", summary)
    return summary


def _write_probabilities(case: Case, probs: np.ndarray, path: Path) -> None:
    """(X, Y, Z, K) probabilities on the input grid.

    NIfTI has no float16, so probabilities are stored as uint8 (p * 255, rounded) with
    ``scl_slope = 1/255``: viewers and nibabel's ``get_fdata`` show 0-1 floats (step 0.004),
    at a quarter of float32's size.
    """
    from gliomaseg.io.nifti import write_nifti

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
    progress: bool = True,
) -> BatchResult:
    """Segment every case under ``inputs``; one bad case is recorded and the rest go on.

    ``model=None`` picks the bundled model per case from its modalities
    (:func:`default_model`) and logs the choice.
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
            log.info("using the bundled %s model for %s", name, _INPUT_KINDS.get(str(name), name))
        models[name] = Segmenter.load(name, device=config.device)
    with StageProgress(len(todo), enabled=progress) as bar:
        for ref in todo:
            bar.start_case(ref.case_id)
            try:
                segment_case(ref, out, models[chosen[ref.case_id]], config, stage=bar.stage)
                result.done.append(ref.case_id)
            except Exception as err:  # the per-case boundary: one bad case never stops a batch
                log.debug("%s failed", ref.path, exc_info=True)
                result.failures.append((str(ref.path), failure_message(err)))
            bar.end_case()
    return result


class StageProgress:
    """A rich bar on stderr that moves at every stage of every case (:data:`STAGES`).

    A single case no longer sits at 0% for the whole inference: the bar shows the case, the
    stage it is in (``BraTS_001: infer``), the stages done of all and the time elapsed.
    """

    def __init__(self, n_cases: int, *, enabled: bool) -> None:
        self.enabled, self.n_cases, self.index = enabled, n_cases, -1
        self.case_id = ""
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("segment"),
            BarColumn(),
            TextColumn("{task.fields[where]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task("segment", total=n_cases * len(STAGES), where="")

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def start_case(self, case_id: str) -> None:
        self.index += 1
        self.case_id = case_id

    def stage(self, name: str) -> None:
        """Stage ``name`` of the current case begins: the stages before it are done."""
        if self.enabled:
            done = self.index * len(STAGES) + STAGES.index(name)
            case = f"case {self.index + 1}/{self.n_cases} " if self.n_cases > 1 else ""
            where = f"{case}{self.case_id}: {name}"
            self.progress.update(self.task, completed=done, where=where)

    def end_case(self) -> None:
        if self.enabled:
            done = (self.index + 1) * len(STAGES)
            self.progress.update(self.task, completed=done, where=f"{self.case_id}: done")
