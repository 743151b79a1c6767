"""A training run ready to fit: a new one (:func:`start_run`) or one resumed (:func:`resume_run`).

Both build the same :class:`Run` (data, network, optimizer, schedule, loss, loader and the
metadata every checkpoint carries); :func:`gliomaseg.train.loop.fit` then trains it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gliomaseg.io.atomic import remove_orphans, write_json_atomic
from gliomaseg.io.cache import cache_axes, load_index
from gliomaseg.io.outputs import CHECKPOINT_DIR, RUN_CONFIG, run_checkpoint
from gliomaseg.models import ModelConfig, input_multiple
from gliomaseg.train.builders import (
    build_from_config,
    build_optimizer,
    build_scheduler,
    cache_channels,
    make_loader,
    resolve_data,
    split_cases,
)
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.datasets import EpochSampler
from gliomaseg.train.losses import build_loss
from gliomaseg.train.resume import replan_schedule, resume_changes, resume_point
from gliomaseg.train.runs import RunState, dist_info, resolve_device

log = logging.getLogger(__name__)

#: Extra training data: (its cache, channel indices, labelled case ids).
ExtraData = tuple[Path, list[int], list[str]]


@dataclass
class RunData:
    """The prepared data of a run: cache, channels fed, the patient-level split."""

    data: Path
    cache: Path
    channels: list[int]
    modalities: tuple[str, ...]
    train_ids: list[str]
    val_ids: list[str]
    extra: ExtraData | None = None


@dataclass
class Run:
    """Everything :func:`gliomaseg.train.loop.fit` needs, built once per process."""

    run_dir: Path
    config: TrainConfig
    data: RunData
    device: torch.device
    rank: int
    world: int
    model: torch.nn.Module
    net: torch.nn.Module  # ``model``, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: torch.nn.Module
    loader: torch.utils.data.DataLoader[Any]
    sampler: EpochSampler
    multiple: int
    meta: dict[str, Any]
    state: RunState = field(default_factory=RunState)


def start_run(
    config: TrainConfig, data: str | Path, run_dir: str | Path, *, progress: bool = True
) -> Run:
    """A new run of ``config`` on ``data`` in ``run_dir`` (which must hold no run yet).

    Raises:
        ValueError: ``run_dir`` holds a run already, or bad data for this config.
        FileNotFoundError: ``data`` or ``config.extra_data`` does not exist.
    """
    run_dir = Path(run_dir)
    if run_checkpoint(run_dir).exists():
        raise ValueError(f"{run_dir}: holds a run already; pass --resume {run_dir} or another -o")
    device, rank, world = _device(config)
    run_data = _open_data(config, data, run_dir, progress=progress and rank == 0)
    network = _network(config, len(run_data.modalities), device)
    if rank == 0:
        _write_config(run_dir, config, run_data)
    return _run(config, run_data, network, run_dir, device=device, rank=rank, world=world)


def resume_run(
    run_dir: str | Path, *, changes: Mapping[str, Any] | None = None, progress: bool = True
) -> Run:
    """The run in ``run_dir``, exactly where its last checkpoint stopped.

    A run killed before its first checkpoint starts again from its ``config.json``.

    Args:
        run_dir: The run folder.
        changes: Settings given again (e.g. the command line's); those in
            :data:`gliomaseg.train.resume.RESUME_CHANGES` apply and are logged, any other that
            differs from the run's is refused (:func:`gliomaseg.train.resume.resume_changes`).
        progress: Show the progress of preparing data, should the run's cache be gone.
    """
    run_dir = Path(run_dir)
    remove_orphans(run_dir / CHECKPOINT_DIR)  # half-written checkpoints of a killed run
    remove_orphans(run_dir)
    ckpt, saved, data = resume_point(run_dir)
    done = RunState(**ckpt["state"]) if ckpt is not None else RunState()
    config, notes = resume_changes(saved, done, changes or {}, run_dir=run_dir)
    device, rank, world = _device(config)
    for note in notes:
        log.info("%s", note)
    run_data = _open_data(config, data, run_dir, progress=progress and rank == 0)
    network = _network(config, len(run_data.modalities), device)
    if ckpt is not None:
        _restore(network, ckpt)
        if config.epochs != saved.epochs:
            log.info("%s", replan_schedule(network.scheduler, network.optimizer, config))
    if rank == 0 and (ckpt is None or config.epochs != saved.epochs):
        _write_config(run_dir, config, run_data)
    return _run(config, run_data, network, run_dir, device=device, rank=rank, world=world)


def _device(config: TrainConfig) -> tuple[torch.device, int, int]:
    """(device, rank, world size), joining the process group when launched by torchrun."""
    rank, world = dist_info()
    device = resolve_device(config.device)
    if world > 1:
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                backend="nccl" if device.type == "cuda" else "gloo"
            )
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device, rank, world


def _open_data(config: TrainConfig, data: str | Path, run_dir: Path, *, progress: bool) -> RunData:
    """The run's cache (prepared into ``run_dir`` when ``data`` is a raw folder) and split."""
    data = Path(data).absolute()  # stored in checkpoints: runs are resumed and bundled elsewhere
    for source in (data, config.extra_data):  # before anything is written
        if source is not None and not Path(source).exists():
            raise FileNotFoundError(f"{source}: no such file or folder; check the path")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        cache = resolve_data(data, run_dir, progress=progress)
    except BaseException:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()  # no empty run folder left behind by bad data
        raise
    channels, modalities = cache_channels(cache, config)
    train_ids, val_ids = split_cases(cache, config)
    extra = _extra_data(config, data, cache, run_dir, progress=progress)
    return RunData(data, cache, channels, modalities, train_ids, val_ids, extra)


def _extra_data(
    config: TrainConfig, data: Path, cache: Path, run_dir: Path, *, progress: bool
) -> ExtraData | None:
    """``config.extra_data`` as a cache of the main cache's orientation, with its cases."""
    if config.extra_data is None:
        return None
    extra_cache = resolve_data(config.extra_data, run_dir, progress=progress, name="extra_cache")
    extra_channels, _ = cache_channels(extra_cache, config)
    if cache_axes(extra_cache) != cache_axes(cache):
        raise ValueError(
            f"{config.extra_data}: prepared in another orientation than {data} (an older "
            "gliomaseg); prepare both again with the same version"
        )
    extra_ids = [c["case_id"] for c in load_index(extra_cache)["cases"] if c["labelled"]]
    if not extra_ids:
        raise ValueError(f"{config.extra_data}: no labelled cases to add to training")
    return extra_cache, extra_channels, extra_ids


@dataclass
class _Network:
    """The trainable parts of a run and where it is."""

    model: torch.nn.Module
    model_cfg: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    state: RunState = field(default_factory=RunState)


def _network(config: TrainConfig, n_modalities: int, device: torch.device) -> _Network:
    """Network, optimizer and schedule of a fresh run (seeded)."""
    torch.manual_seed(config.seed)
    model, model_cfg = build_from_config(config, n_modalities)
    model.to(device)
    if device.type == "cuda" and config.channels_last and config.spatial_dims == 2:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(model, config)
    return _Network(model, model_cfg, optimizer, build_scheduler(optimizer, config))


def _restore(network: _Network, ckpt: Mapping[str, Any]) -> None:
    """Weights, optimizer, schedule, position and torch RNG from the run's last checkpoint."""
    network.model.load_state_dict(ckpt["state_dict"])
    network.optimizer.load_state_dict(ckpt["optimizer"])
    if network.scheduler is not None and ckpt.get("scheduler"):
        network.scheduler.load_state_dict(ckpt["scheduler"])
    network.state = RunState(**ckpt["state"])
    torch.set_rng_state(ckpt["torch_rng"])


def _run(
    config: TrainConfig,
    run_data: RunData,
    network: _Network,
    run_dir: Path,
    *,
    device: torch.device,
    rank: int,
    world: int,
) -> Run:
    """The run: DDP wrapper, loss and loader built after a resume restored the RNG, in the
    order an uninterrupted run built them."""
    net = network.model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(network.model)
    loader, sampler = make_loader(
        run_data.cache,
        run_data.train_ids,
        config,
        run_data.channels,
        rank,
        world,
        extra=run_data.extra,
    )
    return Run(
        run_dir=run_dir,
        config=config,
        data=run_data,
        device=device,
        rank=rank,
        world=world,
        model=network.model,
        net=net,
        optimizer=network.optimizer,
        scheduler=network.scheduler,
        loss_fn=build_loss(config.loss),
        loader=loader,
        sampler=sampler,
        multiple=input_multiple(ModelConfig.from_dict(network.model_cfg)),
        meta=_meta(config, network.model_cfg, run_data),
        state=network.state,
    )


def _write_config(run_dir: Path, config: TrainConfig, run_data: RunData) -> None:
    write_json_atomic(
        run_dir / RUN_CONFIG,
        {**config.to_dict(), "data": str(run_data.data), "cache": str(run_data.cache)},
    )


def _meta(config: TrainConfig, model_cfg: dict[str, Any], run_data: RunData) -> dict[str, Any]:
    """What every checkpoint of the run holds besides weights and the run's position."""
    return {
        "model_config": model_cfg,
        "target": config.target_spec.to_dict(),
        "modalities": list(run_data.modalities),
        "context": config.context,
        "input_scale": float(config.input_scale),
        "data": str(run_data.data),
        "train_config": config.to_dict(),
        "preprocessing": {
            "zscore": "per modality over brain voxels",
            "crop": "brain bounding box",
            "axes": cache_axes(run_data.cache),
        },
    }
