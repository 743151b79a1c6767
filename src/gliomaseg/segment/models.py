"""Which model segments a case: bundled models, checkpoints and run folders, loaded for inference.

``--model`` is a bundled model name (``src/gliomaseg/weights/<name>.pt`` with its ``.json``
card), a checkpoint path or a training run folder; without it the bundled model that fits the
case's modalities is chosen (:func:`gliomaseg.segment.batch.default_model`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gliomaseg.core.case import Case
from gliomaseg.core.errors import InputError
from gliomaseg.core.targets import TargetSpec
from gliomaseg.io import outputs
from gliomaseg.io.cache import NETWORK_AXES, network_axes
from gliomaseg.io.caseref import CaseRef
from gliomaseg.models import ModelConfig, input_multiple
from gliomaseg.models.checkpoint import input_scale, load_model
from gliomaseg.models.inference import (
    fuse_batch_norm,
    inference_copy,
    instance_norm_as_group_norm,
)
from gliomaseg.segment.config import PostprocessConfig, SegmentConfig
from gliomaseg.train.runs import resolve_device, use_bf16

log = logging.getLogger(__name__)

#: The bundled models (``<name>.pt`` + ``<name>.json`` card) shipped in the package.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


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
    #: Whether ``model`` has been converted for bf16 (True) or float32 (False) inference by
    #: :meth:`network`; None before its first use.
    _converted: bool | None = field(default=None, repr=False)

    def bf16(self, config: SegmentConfig) -> bool:
        """Whether inference runs in bf16 (``SegmentConfig.fp32`` says why not)."""
        return use_bf16(self.device, not config.fp32)

    def network(self, config: SegmentConfig) -> torch.nn.Module:
        """``model`` made faster for ``config``'s precision, computing the same logits.

        On first use a 2D network is converted in place
        (:func:`gliomaseg.models.inference.inference_copy`: bf16 weights instead of autocast
        where that changes nothing, leaky ReLU for PReLU); a Segmenter then serves that
        precision only (load another for the other one).

        Raises:
            ValueError: ``config`` asks for the other precision than the first use.
        """
        if self.spatial_dims != 2:
            return self.model
        bf16 = self.bf16(config)
        if self._converted is None:
            fast = inference_copy(self.model, bf16=bf16, in_place=True)
            if fast is not None:  # else it stays as loaded, under autocast
                self.model, self._converted = fast, bf16
        elif self._converted != bf16:
            want, have = ("bf16", "float32") if bf16 else ("float32", "bf16")
            raise ValueError(f"this Segmenter runs in {have}; load another one for {want}")
        return self.model

    @classmethod
    def load(cls, model: str | Path, *, device: str = "auto") -> Segmenter:
        """From a checkpoint path or the name of a bundled model (``gliomaseg models``)."""
        path = resolve_model(model)
        dev = resolve_device(device)
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


def flag_threshold(seg: Segmenter, config: SegmentConfig) -> tuple[float | None, str]:
    """The review-flag threshold and where it comes from.

    ``--flag-threshold`` if given, else the model's own (``review.threshold`` in its
    checkpoint, set by ``gliomaseg bundle --flag-threshold`` from ``bench/flags.py`` on its
    cross-validation predictions), else None: :data:`gliomaseg.segment.uncertainty.
    DEFAULT_THRESHOLD`.
    """
    if config.flag_threshold is not None:
        return config.flag_threshold, "--flag-threshold"
    stored = seg.meta.get("review", {}).get("threshold")
    if stored is not None:
        return float(stored), "model"
    return None, "default"


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
        (outputs.run_checkpoint(folder, "best"), "the run's best validation epoch"),
        (outputs.run_checkpoint(folder, "last"), "the run's last epoch (no best.pt yet)"),
        (folder / outputs.BEST_CHECKPOINT, "the run's best validation epoch"),
        (folder / outputs.LAST_CHECKPOINT, "the run's last epoch (no best.pt yet)"),
    )
    for path, what in candidates:
        if path.is_file():
            log.info("--model %s is a training run folder: using %s, %s", folder, path, what)
            return path
    if any(folder.glob(f"fold*/{outputs.CHECKPOINT_DIR}/{outputs.LAST_CHECKPOINT}")):
        raise InputError(
            f"{folder}: a --cv run without its ensemble yet (no model.pt); rerun its 'gliomaseg "
            f"train --cv' command to finish it, or pass one fold, e.g. {folder / 'fold0'}"
        )
    raise InputError(
        f"{folder}: a folder without a model (no model.pt or checkpoints/best.pt); pass a "
        "checkpoint .pt, a training run folder or a bundled model name (gliomaseg models)"
    )
