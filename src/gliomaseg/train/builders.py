"""What a training run is built from: its data (cache, split, channels, loader), network,
optimizer and learning-rate schedule."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gliomaseg.core.errors import InputError
from gliomaseg.io.cache import is_cache, load_index
from gliomaseg.models import build_model
from gliomaseg.prepare.workflow import prepare_dataset
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.datasets import (
    ConcatSlices,
    EpochSampler,
    PatchDataset,
    PreparedCases,
    SliceDataset,
)

log = logging.getLogger(__name__)


def resolve_data(data: str | Path, run_dir: Path, *, progress: bool, name: str = "cache") -> Path:
    """A prepared cache for ``data``: itself if already one, else prepared into ``run_dir/name``."""
    data = Path(data)
    if is_cache(data):
        return data
    cache = run_dir / name
    result = prepare_dataset(data, cache, progress=progress)
    if not result.n_cases and len(result.failures) == 1:
        raise InputError(result.failures[0][1])  # the one case's own error, said once
    for path, msg in result.failures:
        log.error("skipped %s: %s", path, msg)
    if not result.n_cases:
        raise InputError(f"{data}: no usable case to train on (see the errors above); fix the data")
    return cache


def split_cases(cache: Path, config: TrainConfig) -> tuple[list[str], list[str]]:
    """Training and validation case ids from the cache's patient-level folds."""
    index = load_index(cache)
    labelled = [c for c in index["cases"] if c["labelled"]]
    if not labelled:
        raise ValueError(f"{cache}: no labelled cases to train on")
    if config.fold < 0:
        return [c["case_id"] for c in labelled], []
    folds = index.get("folds") or []
    if config.fold >= len(folds):
        raise ValueError(
            f"{cache}: fold {config.fold} does not exist ({len(folds)} folds); use --fold -1 to "
            "train on all cases, or prepare with more patients"
        )
    val_patients = set(folds[config.fold]["val"])
    train = [c["case_id"] for c in labelled if c["patient"] not in val_patients]
    val = [c["case_id"] for c in labelled if c["patient"] in val_patients]
    return train, val


def cache_channels(cache: Path, config: TrainConfig) -> tuple[list[int], tuple[str, ...]]:
    available = tuple(load_index(cache)["modalities"])
    wanted = config.modalities or available
    missing = [m for m in wanted if m not in available]
    if missing:
        raise ValueError(
            f"{cache}: missing modality {', '.join(missing)} (cache has {', '.join(available)}; "
            f"the model needs {', '.join(wanted)})"
        )
    return [available.index(m) for m in wanted], tuple(wanted)


def build_from_config(
    config: TrainConfig, n_modalities: int
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network for a config, with input/output channels filled in; its config as a dict."""
    model_config = replace(
        config.model,
        in_channels=n_modalities * (2 * config.context + 1),
        out_channels=config.target_spec.channels,
    )
    return build_model(model_config), model_config.to_dict()


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, config: TrainConfig) -> Any:
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    return None


def make_loader(
    cache: Path,
    train_ids: list[str],
    config: TrainConfig,
    channels: list[int],
    rank: int,
    world: int,
    *,
    extra: tuple[Path, list[int], list[str]] | None = None,
) -> tuple[torch.utils.data.DataLoader[Any], EpochSampler]:
    cases = PreparedCases(cache, train_ids)
    dataset: SliceDataset | PatchDataset | ConcatSlices
    groups: list[int] | None = None
    if config.spatial_dims == 3:
        dataset = PatchDataset(
            cases,
            target=config.target_spec,
            size=tuple(config.patch_size),  # type: ignore[arg-type]
            flip=config.augment.flip,
            channels=channels,
        )
        has_tumour = [True] * len(train_ids)
    else:
        dataset = _slice_dataset(cases, config, channels)
        has_tumour = [s.tumour_pixels > 0 for s in dataset.slices]
        if extra is not None:
            extra_set = _slice_dataset(PreparedCases(extra[0], extra[2]), config, extra[1])
            groups = [0] * len(dataset) + [1] * len(extra_set)
            has_tumour += [s.tumour_pixels > 0 for s in extra_set.slices]
            dataset = ConcatSlices([dataset, extra_set])
    sampler = EpochSampler(
        has_tumour,
        length=config.steps_per_epoch * config.batch_size * world,
        seed=config.seed,
        tumour_fraction=config.tumour_fraction,
        rank=rank,
        world_size=world,
        groups=groups,
        group_fractions=[1.0 - config.extra_fraction, config.extra_fraction],
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=False,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler


def _slice_dataset(cases: PreparedCases, config: TrainConfig, channels: list[int]) -> SliceDataset:
    """The 2D training samples of ``cases`` that ``config`` asks for."""
    slices = cases.slices(
        min_tumour_pixels=config.min_tumour_pixels, tumour_only=config.tumour_only
    )
    return SliceDataset(
        cases,
        slices,
        target=config.target_spec,
        size=tuple(config.patch_size),  # type: ignore[arg-type]
        context=config.context,
        channels=channels,
        augment_config=config.augment,
        input_scale=config.input_scale,
    )
