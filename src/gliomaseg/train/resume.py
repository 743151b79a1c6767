"""Resuming a run: where it starts again, which settings may change, the re-planned schedule.

A resume may extend the run (``epochs``, re-planning the learning-rate schedule) or move it
to another device; every other setting is the run's own (:func:`resume_changes`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gliomaseg.core.errors import InputError
from gliomaseg.io.outputs import RUN_CONFIG, run_checkpoint
from gliomaseg.models.checkpoint import load_checkpoint
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.runs import RunState

log = logging.getLogger(__name__)

#: Settings a resume may change (:func:`resume_changes`); every other one is the run's own.
RESUME_CHANGES = ("epochs", "device", "workers")


def resume_point(run_dir: Path) -> tuple[dict[str, Any] | None, TrainConfig, str]:
    """Where ``--resume run_dir`` starts: (last checkpoint or None, config, data).

    A run killed before its first checkpoint still has its ``config.json``: it starts again
    from there (training is deterministic, so nothing but time is lost).

    Raises:
        FileNotFoundError: no such folder, or no run in it (one line with the fix).
    """
    last = run_checkpoint(run_dir)
    if last.exists():
        ckpt = load_checkpoint(last)
        return ckpt, TrainConfig.from_dict(ckpt["train_config"]), ckpt["data"]
    saved_file = run_dir / RUN_CONFIG
    if not saved_file.exists():
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run folder; check the path")
        raise FileNotFoundError(
            f"{run_dir}: no training run here (no checkpoints/last.pt, no config.json); start "
            f"one with 'gliomaseg train --data DATA -o {run_dir}'"
        )
    try:
        saved = json.loads(saved_file.read_text())
        data = str(saved.pop("data"))
    except (ValueError, KeyError, AttributeError):
        raise InputError(
            f"{saved_file}: not a training run's config.json (no 'data'); start a new run"
        ) from None
    saved.pop("cache", None)
    log.info(
        "%s: no checkpoint yet (the run stopped before its first one); starting it again "
        "from its config.json",
        run_dir,
    )
    return None, TrainConfig.from_dict(saved), data


def resumable_changes(
    config: Any, changes: Mapping[str, Any], allowed: Sequence[str], run_dir: Path
) -> dict[str, Any]:
    """The settings given on ``--resume`` (None: not given), refusing any outside ``allowed``.

    A setting given with the run's own value is no change. Shared by ``train`` and
    ``autoencoder train``.

    Raises:
        InputError: one line naming each setting that cannot change, the run's value and
            the fix.
    """
    given = {k: v for k, v in changes.items() if v is not None}
    fixed = [k for k, v in given.items() if k not in allowed and getattr(config, k) != v]
    if fixed:
        flags = ", ".join(
            f"--{k.replace('_', '-')} (the run has {getattr(config, k)!r})" for k in fixed
        )
        may = ", ".join(f"--{k.replace('_', '-')}" for k in allowed)
        raise InputError(
            f"{run_dir}: --resume continues the run as it was configured, so {flags} cannot "
            f"change; resume without it (only {may} may change), or start a new run with "
            "-o NEW_RUN_DIR"
        )
    return given


def resume_changes(
    config: TrainConfig, state: RunState, changes: Mapping[str, Any], *, run_dir: Path
) -> tuple[TrainConfig, list[str]]:
    """Apply the settings a resume may change (:data:`RESUME_CHANGES`), refusing the others.

    ``epochs`` extends (or shortens) the run: the learning-rate schedule is re-planned over
    the new length when the run resumes. ``device`` and ``workers`` only say where and how
    it runs. A setting given with the run's own value is no change.

    Returns:
        (the config to continue with, one line per change for the log).

    Raises:
        InputError: a setting that cannot change on resume, or ``epochs`` below the epochs
            already trained or past an early stop; one line with the fix.
    """
    given = resumable_changes(config, changes, RESUME_CHANGES, run_dir)
    notes = []
    epochs = given.get("epochs", config.epochs)
    if epochs != config.epochs:
        if epochs < state.epoch or (epochs == state.epoch and state.step):
            raise InputError(
                f"{run_dir}: --epochs {epochs} is fewer than the {state.epoch} epoch(s) the run "
                "has trained; give a larger number to extend it"
            )
        if state.stopped_early:
            raise InputError(
                f"{run_dir}: the run stopped early at epoch {state.epoch} (no better validation "
                "Dice); --epochs cannot extend it: start a new run with -o NEW_RUN_DIR"
            )
        verb = "extending" if epochs > config.epochs else "shortening"
        notes.append(f"{verb} the run from {config.epochs} to {epochs} epochs")
    device = given.get("device", config.device)
    if device != config.device:
        notes.append(
            f"continuing on --device {device} (the run was started with {config.device}); "
            "its numbers may differ in the last bits from an uninterrupted run"
        )
    workers = given.get("workers", config.workers)
    if workers != config.workers:
        notes.append(f"loading data with {workers} worker(s) (the run used {config.workers})")
    return replace(config, epochs=epochs, device=device, workers=workers), notes


def replan_schedule(scheduler: Any, optimizer: torch.optim.Optimizer, config: TrainConfig) -> str:
    """Fit a resumed run's learning-rate schedule to a new ``config.epochs``; says how.

    A cosine schedule is re-planned from the base learning rate over the new length and the
    learning rate set to its value at the epochs already done (a finished run's learning
    rate, near zero, rises again); a plateau schedule follows the validation Dice and goes
    on unchanged; without a schedule the learning rate stays.
    """
    old = optimizer.param_groups[0]["lr"]
    if config.scheduler == "cosine" and scheduler is not None:
        scheduler.T_max = config.epochs
        done = scheduler.last_epoch
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            eta = scheduler.eta_min
            group["lr"] = eta + (base - eta) * (1 + math.cos(math.pi * done / config.epochs)) / 2
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
        return (
            f"the cosine learning-rate schedule is re-planned over {config.epochs} epochs: "
            f"lr {optimizer.param_groups[0]['lr']:.2e} at epoch {done} (was {old:.2e})"
        )
    if config.scheduler == "plateau":
        return f"the plateau schedule goes on as before (lr {old:.2e}; it follows validation)"
    return f"the learning rate stays {old:.2e} (no schedule)"
