"""Validation during training: per-patient and per-slice Dice, precision and recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gliomaseg.core.labels import REGIONS
from gliomaseg.core.targets import TargetSpec
from gliomaseg.evaluate.metrics import confusion, dice, precision, recall, slice_metrics
from gliomaseg.io.cache import open_case
from gliomaseg.models.inference import predict_volume, predict_volume_3d
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.runs import use_bf16


def validate(
    model: torch.nn.Module,
    cache: Path,
    case_ids: list[str],
    *,
    config: TrainConfig,
    channels: list[int],
    device: torch.device,
    multiple: int,
) -> dict[str, float]:
    """Per-patient (volume) and slice-level Dice, precision and recall per output channel.

    Metrics are computed for the network's own output channels and, for multi-class targets,
    also for every BraTS region (WT, TC, ET) and label (NCR/NET, ED, ET) of the decoded map.

    Returns a flat dict: ``dice_<name>``, ``precision_<name>``, ``recall_<name>`` (volume level,
    i.e. per patient, mean over cases), ``slice_dice_<name>`` (mean over slices with tumour in
    either mask), and ``dice_mean`` (mean volume Dice over the network's non-background
    channels, used for model selection).
    """
    target = config.target_spec
    groups = _validation_groups(target)
    sums: dict[str, list[float]] = {}
    for case_id in case_ids[: config.val_max_cases]:
        image, label, _ = open_case(cache, case_id)
        if label is None:
            continue
        probs = _predict(model, image, config, channels=channels, device=device, multiple=multiple)
        _add_case(sums, target.decode(probs), np.asarray(label), groups)
    out = {k: float(np.mean(v)) for k, v in sums.items()}
    selected = [n for n, g in zip(target.names, target.groups, strict=True) if 0 not in g]
    dices = [out[f"dice_{n}"] for n in selected if f"dice_{n}" in out]
    out["dice_mean"] = float(np.mean(dices)) if dices else float("nan")
    return out


def _predict(
    model: torch.nn.Module,
    image: np.ndarray,
    config: TrainConfig,
    *,
    channels: list[int],
    device: torch.device,
    multiple: int,
) -> np.ndarray:
    """(K, Z, x, y) probabilities of one cached case, as ``segment`` would predict them."""
    if config.spatial_dims == 3:
        return predict_volume_3d(
            model,
            image,
            target=config.target_spec,
            roi_size=tuple(config.patch_size),
            channels=channels,
            device=device,
            amp=use_bf16(device, config.amp),
        )
    return predict_volume(
        model,
        image,
        target=config.target_spec,
        multiple=multiple,
        batch_size=config.val_batch_size,
        context=config.context,
        channels=channels,
        device=device,
        amp=use_bf16(device, config.amp),
        input_scale=config.input_scale,
    )


def _add_case(
    sums: dict[str, list[float]],
    pred: np.ndarray,
    ref: np.ndarray,
    groups: list[tuple[str, tuple[int, ...]]],
) -> None:
    """Append one case's metrics of every structure to ``sums`` (label maps (Z, x, y))."""
    for name, group in groups:
        p, r = np.isin(pred, group), np.isin(ref, group)
        counts = confusion(p, r)
        for key, fn in (("dice", dice), ("precision", precision), ("recall", recall)):
            sums.setdefault(f"{key}_{name}", []).append(float(fn(counts)))
        per_slice = slice_metrics(p, r, axis=0)  # slices are axis 0 in the cache
        either = (per_slice["tp"] + per_slice["fp"] + per_slice["fn"]) > 0
        if either.any():
            sums.setdefault(f"slice_dice_{name}", []).append(
                float(np.mean(per_slice["dice"][either]))
            )


def _validation_groups(target: TargetSpec) -> list[tuple[str, tuple[int, ...]]]:
    """(name, internal codes) of every structure validated, the output channels first."""
    groups = {n: g for n, g in zip(target.names, target.groups, strict=True) if 0 not in g}
    if len(target.groups) > 1 or target.groups[0] != (1, 2, 3):
        for name, codes in {**REGIONS, "NCR/NET": (1,), "ED": (2,)}.items():
            groups.setdefault(name, codes)
    return list(groups.items())
