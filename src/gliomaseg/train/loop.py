"""Training loop: atomic checkpoints, exact resume, DDP.

A run folder holds ``config.json``, ``metrics.csv``, ``curves.png`` and
``checkpoints/{last,best}.pt``. ``last.pt`` is rewritten atomically at the end of every epoch,
every ``checkpoint_minutes`` minutes inside an epoch (and every ``save_every_steps`` steps)
with the model, optimizer, scheduler, torch RNG state and the position in the epoch; batches
are a pure function of ``(seed, epoch)`` (see :class:`gliomaseg.train.datasets.EpochSampler`), so
``--resume`` continues with exactly the batch an uninterrupted run would have seen next.
A resume may extend the run (``epochs``, re-planning the learning-rate schedule) or move it
to another device; every other setting is the run's own
(:func:`gliomaseg.train.resume.resume_changes`).

:func:`train` starts a run and :func:`resume_training` continues one; both build a
:class:`gliomaseg.train.session.Run` and :func:`fit` it.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from gliomaseg.io.atomic import atomic_path
from gliomaseg.io.outputs import RUN_METRICS, run_checkpoint
from gliomaseg.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from gliomaseg.models.inference import autocast
from gliomaseg.train.config import DEFAULT_PRESETS, TrainConfig
from gliomaseg.train.runs import (
    CheckpointClock,
    ProgressLines,
    RunState,
    append_metrics,
    format_duration,
    plot_curves,
    use_bf16,
)
from gliomaseg.train.session import Run, resume_run, start_run
from gliomaseg.train.validation import validate

log = logging.getLogger(__name__)

#: On a CPU, a projected epoch longer than this many minutes gets a one-line warning that
#: names the CPU preset (measured on the run's first steps).
SLOW_EPOCH_MINUTES = 15.0

#: Default interval of the time-based checkpoints (minutes).
CHECKPOINT_MINUTES = 5.0


def train(
    config: TrainConfig,
    data: str | Path,
    run_dir: str | Path,
    *,
    progress: bool = True,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    monitor: ProgressLines | None = None,
) -> RunState:
    """Train a new run of ``config`` on ``data`` into ``run_dir``; returns the final run state.

    Args:
        config: The settings.
        data: Dataset folder or prepared cache.
        run_dir: The run folder (must not hold a run yet: :func:`resume_training` continues one).
        progress: Progress lines while training (and while preparing raw data); off, only
            epoch lines are logged.
        checkpoint_minutes: Also checkpoint inside an epoch when this many minutes passed
            since the last checkpoint (0: epoch ends and ``save_every_steps`` only).
        monitor: What shows the progress (default: :class:`ProgressLines`, log lines every
            30 s; the command line passes a terminal bar).

    Raises:
        ValueError: bad config, missing modalities, an existing run in ``run_dir``.
    """
    run = start_run(config, data, run_dir, progress=progress)
    return fit(run, progress=progress, checkpoint_minutes=checkpoint_minutes, monitor=monitor)


def resume_training(
    run_dir: str | Path,
    *,
    changes: Mapping[str, Any] | None = None,
    progress: bool = True,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    monitor: ProgressLines | None = None,
) -> RunState:
    """Continue the run in ``run_dir`` exactly where its last checkpoint stopped.

    Args:
        run_dir, changes: As for :func:`gliomaseg.train.session.resume_run` (a run killed
            before its first checkpoint starts again; only some settings may change).
        progress, checkpoint_minutes, monitor: As for :func:`train`.

    Raises:
        FileNotFoundError: no run in ``run_dir``.
        InputError: a change a resume cannot make, or a corrupt checkpoint.
    """
    run = resume_run(run_dir, changes=changes, progress=progress)
    return fit(run, progress=progress, checkpoint_minutes=checkpoint_minutes, monitor=monitor)


def fit(
    run: Run,
    *,
    progress: bool = True,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    monitor: ProgressLines | None = None,
) -> RunState:
    """Train ``run`` to its last epoch (or an early stop); returns the final run state.

    ``monitor`` shows the progress on rank 0 (default: log lines); with ``progress`` off, and
    on the other ranks, only epoch lines are logged.
    """
    config, state = run.config, run.state
    _log_start(run, checkpoint_minutes)
    clock = CheckpointClock(checkpoint_minutes)
    if not progress or run.rank != 0:
        monitor = ProgressLines(steps=False)
    bar = monitor if monitor is not None else ProgressLines()
    bar.start(
        total=config.epochs * config.steps_per_epoch,
        done=state.epoch * config.steps_per_epoch + state.step,
        steps_per_epoch=config.steps_per_epoch,
    )
    pace = _PaceCheck(config, run.device, enabled=run.rank == 0)
    try:
        while state.epoch < config.epochs and not state.stopped_early:
            epoch_start, cpu_start = time.perf_counter(), time.process_time()
            _train_epoch(run, bar, pace, clock)
            row = _end_of_epoch(
                run,
                seconds=time.perf_counter() - epoch_start,
                cpu_seconds=time.process_time() - cpu_start,
            )
            bar.epoch_done(state.epoch, row)
            if run.rank == 0:
                _record_epoch(run, row)
                clock.reset()
    finally:
        bar.close()
        if run.world > 1:
            torch.distributed.destroy_process_group()
    last, best = run_checkpoint(run.run_dir, "last"), run_checkpoint(run.run_dir, "best")
    if run.rank == 0 and state.best_epoch < 0 and last.exists():
        # Without validation (or no validation Dice) the last weights are the best we have.
        with atomic_path(best) as tmp:
            shutil.copyfile(last, tmp)
    return state


def _log_start(run: Run, checkpoint_minutes: float) -> None:
    config, device = run.config, run.device
    log.info(
        "training on %s with %s: %d epochs x %d steps x batch %d; %s",
        f"cpu ({torch.get_num_threads()} threads)" if device.type == "cpu" else device,
        "bf16 autocast" if use_bf16(device, config.amp) else "float32",
        config.epochs,
        config.steps_per_epoch,
        config.batch_size,
        f"a checkpoint every {checkpoint_minutes:g} min and at epoch ends"
        if checkpoint_minutes
        else "a checkpoint at epoch ends",
    )


def _train_epoch(run: Run, bar: ProgressLines, pace: _PaceCheck, clock: CheckpointClock) -> None:
    """The rest of the current epoch's steps, with the timed checkpoints inside it."""
    config, state = run.config, run.state
    run.sampler.set_epoch(state.epoch, skip=state.step * config.batch_size)
    run.net.train()
    for batch in run.loader:
        loss = _step(run.net, run.loss_fn, run.optimizer, batch, device=run.device, config=config)
        state.epoch_loss_sum += loss
        state.step += 1
        state.global_step += 1
        bar.advance(loss)
        pace.after_step()
        every = config.save_every_steps
        if (
            run.rank == 0
            and state.step < config.steps_per_epoch
            and ((every and state.step % every == 0) or clock.due())
        ):
            _save(run, "last")
            clock.reset()


def _end_of_epoch(run: Run, *, seconds: float, cpu_seconds: float) -> dict[str, Any]:
    """Validate, step the schedule, move the run state on; returns the epoch's metrics row.

    ``seconds`` is the wall-clock time of the epoch's training steps, ``cpu_seconds`` the CPU
    time the process spent on them (all its threads): the budget a recipe used, whatever else
    shared the machine.
    """
    config, state = run.config, run.state
    if run.world > 1:
        _sync_buffers(run.model)
    metrics = (
        validate(
            run.model,
            run.data.cache,
            run.data.val_ids,
            config=config,
            channels=run.data.channels,
            device=run.device,
            multiple=run.multiple,
        )
        if run.data.val_ids
        else {}
    )
    train_loss = state.epoch_loss_sum / state.step if state.step else float("nan")
    _end_epoch(state, run.scheduler, metrics, config)
    return {
        "epoch": state.epoch,
        "global_step": state.global_step,
        "train_loss": train_loss,
        "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        **metrics,
    }


def _record_epoch(run: Run, row: dict[str, Any]) -> None:
    """Rank 0's epoch end: the metrics row, ``last.pt`` (and ``best.pt``), the curves."""
    append_metrics(run.run_dir / RUN_METRICS, row)
    _save(run, "last")
    if run.state.best_epoch == run.state.epoch:
        _save(run, "best")
    plot_curves(run.run_dir)


def _step(
    net: torch.nn.Module,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    *,
    device: torch.device,
    config: TrainConfig,
) -> float:
    x = batch["image"].to(device, non_blocking=True)
    y = batch["target"].to(device, non_blocking=True)
    if device.type == "cuda" and config.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    if config.target_spec.kind == "softmax":
        y = y[:, None]  # (N, 1, ...) class indices, as MONAI's losses expect
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, use_bf16(device, config.amp)):
        logits = net(x)
    loss = loss_fn(logits.float(), y)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss became {loss.item()}; lower the learning rate or check the data"
        )
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _end_epoch(
    state: RunState, scheduler: Any, metrics: dict[str, float], config: TrainConfig
) -> None:
    state.epoch += 1
    state.step = 0
    state.epoch_loss_sum = 0.0
    score = metrics.get("dice_mean", float("nan"))
    if math.isnan(score):
        if scheduler is not None and config.scheduler == "cosine":
            scheduler.step()
        return
    if score > state.best_metric:
        state.best_metric, state.best_epoch, state.bad_epochs = score, state.epoch, 0
    else:
        state.bad_epochs += 1
    if scheduler is not None:
        scheduler.step(score) if config.scheduler == "plateau" else scheduler.step()
    if config.early_stopping and state.bad_epochs >= config.early_stopping:
        state.stopped_early = True
        log.info("early stopping: no better validation Dice for %d epochs", state.bad_epochs)


class _PaceCheck:
    """Warns once when, on a CPU, the first steps project an epoch over SLOW_EPOCH_MINUTES.

    The first step is left out of the measurement (it pays for warm-up); the next five are
    timed.
    """

    STEPS = 5

    def __init__(self, config: TrainConfig, device: torch.device, *, enabled: bool) -> None:
        self.config, self.enabled = config, enabled and device.type == "cpu"
        self.steps, self.start = 0, 0.0

    def after_step(self) -> None:
        if not self.enabled:
            return
        self.steps += 1
        if self.steps == 1:
            self.start = time.perf_counter()
        elif self.steps == 1 + self.STEPS:
            self.enabled = False
            per_step = (time.perf_counter() - self.start) / self.STEPS
            message = slow_epoch_warning(self.config, per_step)
            if message:
                log.warning("%s", message)


def slow_epoch_warning(config: TrainConfig, seconds_per_step: float) -> str | None:
    """One line when an epoch at ``seconds_per_step`` takes over SLOW_EPOCH_MINUTES on a CPU."""
    epoch_s = seconds_per_step * config.steps_per_epoch
    if epoch_s < 60 * SLOW_EPOCH_MINUTES:
        return None
    kind = "lgg" if config.target_spec.channels == 1 else "brats"
    cpu_preset = DEFAULT_PRESETS[(kind, "cpu")]
    fix = (
        f"--preset {cpu_preset} is sized for a CPU, or lower --steps-per-epoch/--batch-size"
        if config.name != cpu_preset
        else "lower --steps-per-epoch or --batch-size, or train on a GPU"
    )
    return (
        f"an epoch of {config.name} ({config.steps_per_epoch} steps at "
        f"{seconds_per_step:.1f} s/step) will take about {format_duration(epoch_s)} on this "
        f"CPU, the run about {format_duration(epoch_s * config.epochs)}; {fix}"
    )


def _save(run: Run, which: str) -> None:
    """Write the run's ``checkpoints/{which}.pt`` (``last`` or ``best``) atomically."""
    save_checkpoint(
        run_checkpoint(run.run_dir, which),
        {
            "format": CHECKPOINT_FORMAT,
            "kind": "segmentation",
            **run.meta,
            "state_dict": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "state": asdict(run.state),
            "torch_rng": torch.get_rng_state(),
        },
    )


def _sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP averages gradients, so parameters agree on every rank, but each rank updates its own
    running statistics in ``forward``; broadcasting them at epoch ends (as DDP itself does
    before each forward) keeps validation and checkpoints identical across ranks.
    """
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)
