"""Training of the mask autoencoder, on the segmentation loop's run bookkeeping.

Batches are drawn by :class:`~gliomaseg.train.datasets.EpochSampler` (a pure function of
``(seed, epoch)``, skipping what was done on resume); checkpoints are atomic
``checkpoints/{last,best}.pt`` written and read by :mod:`gliomaseg.models.checkpoint`
(``weights_only=True``); ``metrics.csv``, the curves and the progress display come from
:mod:`gliomaseg.train.runs`. Loss: Dice + binary cross-entropy
(:func:`gliomaseg.train.losses.build_loss`), Adam at a constant learning rate.

``RUN/masks.npz`` keeps the training masks so a resume sees exactly the same data; a resume
continues (or extends, with a new ``epochs``) a run and ends with the weights an uninterrupted
run of that many epochs has. About a tenth of the patients (at least five needed) are held
out; their mean per-slice reconstruction Dice is ``dice_mean`` in ``metrics.csv`` and selects
``best.pt``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from gliomaseg.explain.autoencoder.config import KIND, AutoencoderConfig
from gliomaseg.explain.autoencoder.data import MaskSet, load_masks, split_patients
from gliomaseg.explain.autoencoder.model import (
    _own_checkpoint,
    _tensor,
    build_autoencoder,
    dice_per_mask,
    reconstruct,
)
from gliomaseg.io.atomic import atomic_path, write_json_atomic
from gliomaseg.io.outputs import RUN_CONFIG, RUN_METRICS, run_checkpoint
from gliomaseg.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from gliomaseg.train.datasets import EpochSampler
from gliomaseg.train.losses import build_loss
from gliomaseg.train.resume import resumable_changes
from gliomaseg.train.runs import (
    ProgressLines,
    RunState,
    append_metrics,
    plot_curves,
    resolve_device,
)

log = logging.getLogger(__name__)

#: Masks of a run, kept so that a resume trains on exactly the same data.
MASKS_FILE = "masks.npz"
#: Settings a resume may change; every other one is the run's own.
RESUME_CHANGES = ("epochs", "device")


def train_autoencoder(
    config: AutoencoderConfig | None,
    masks: MaskSet | str | Path | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    epochs: int | None = None,
    changes: Mapping[str, Any] | None = None,
    source: str | None = None,
    progress: bool = True,
    monitor: ProgressLines | None = None,
) -> RunState:
    """Train (or resume) an autoencoder run; returns the final run state.

    Args:
        config: Settings; None when resuming (the run's own are used).
        masks: A :class:`MaskSet`, or a cache/folder for :func:`load_masks`; None on resume.
        run_dir: Run folder (``config.json``, ``masks.npz``, ``metrics.csv``, ``curves.png``,
            ``checkpoints/{last,best}.pt``).
        resume: Continue the run in ``run_dir`` from ``checkpoints/last.pt`` exactly.
        epochs: On resume, a new total number of epochs (extends a finished run).
        changes: On resume, settings given again (e.g. the command line's; None: not
            given); only :data:`RESUME_CHANGES` may differ from the run's own.
        source: Where the masks came from, recorded in the run (default: ``masks`` when it
            is a path).
        progress: Progress while training (off: epoch lines only).
        monitor: What shows it (default: log lines; the command line passes a terminal bar).

    Raises:
        ValueError: a bad config, no masks, a corrupt checkpoint, an existing run folder
            without ``resume``, or (InputError) a resume that changes a fixed setting.
    """
    # Over 60 lines by its docstring (every argument documented); the body is ~40.
    run = Path(run_dir)
    ckpt: dict[str, Any] = {}
    if resume:
        ckpt = _own_checkpoint(load_checkpoint(run_checkpoint(run)), run_checkpoint(run))
        config = _resume_config(ckpt, {**(changes or {}), "epochs": epochs}, run)
        data, source = MaskSet.load(run / MASKS_FILE), str(ckpt.get("data", ""))
    else:
        config, data, source = _new_run(config, masks, run, source)
    write_json_atomic(run / RUN_CONFIG, {**config.to_dict(), "data": source})
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_autoencoder(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    state = _restore(model, optimizer, ckpt) if resume else RunState()
    train_idx, val_idx = split_patients(data.patients, config.val_fraction, seed=config.seed)
    meta = {
        "kind": KIND,
        "model_config": config.to_dict(),
        "train_config": config.to_dict(),
        "data": source,
        "preprocessing": _preprocessing(config),
    }
    loop = _Loop(model, optimizer, build_loss({"name": "dice_bce"}), data, config, device)
    bar = (monitor or ProgressLines()) if progress else ProgressLines(steps=False)
    bar.start(
        total=config.epochs * config.steps_per_epoch,
        done=state.epoch * config.steps_per_epoch + state.step,
        steps_per_epoch=config.steps_per_epoch,
    )
    try:
        loop.run(state, train_idx, val_idx, run_dir=run, meta=meta, bar=bar)
    finally:
        bar.close()
    _finish(run, val_idx)
    return state


def _restore(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, ckpt: Mapping[str, Any]
) -> RunState:
    """Weights, optimizer, run state and RNG of a checkpoint, so the run continues exactly."""
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    return RunState(**ckpt["state"])


def _new_run(
    config: AutoencoderConfig | None,
    masks: MaskSet | str | Path | None,
    run: Path,
    source: str | None,
) -> tuple[AutoencoderConfig, MaskSet, str]:
    """Config, masks and their source of a new run; the masks are saved in ``run``."""
    if run_checkpoint(run).exists():
        raise ValueError(f"{run}: holds a run already; pass --resume {run} or another -o")
    if config is None or masks is None:
        raise ValueError("autoencoder training needs a config and masks unless resuming")
    data = masks if isinstance(masks, MaskSet) else _load_or_fail(masks, config)
    source = source or ("in-memory masks" if isinstance(masks, MaskSet) else str(masks))
    run.mkdir(parents=True, exist_ok=True)
    data.save(run / MASKS_FILE)
    return config, data, source


def _resume_config(
    ckpt: Mapping[str, Any], changes: Mapping[str, Any], run: Path
) -> AutoencoderConfig:
    """The run's own config with :data:`RESUME_CHANGES` applied; any other change refused."""
    config = AutoencoderConfig.from_dict(ckpt["train_config"])
    given = resumable_changes(config, changes, RESUME_CHANGES, run)
    return replace(config, **{k: given[k] for k in RESUME_CHANGES if k in given})


def _load_or_fail(source: str | Path, config: AutoencoderConfig) -> MaskSet:
    data, failures = load_masks(source, config=config)
    for path, msg in failures:
        log.error("skipped %s: %s", path, msg)
    return data


def _preprocessing(config: AutoencoderConfig) -> dict[str, Any]:
    return {
        "masks": "axial whole tumour (label > 0), axis 2 of canonical RAS+ arrays",
        "grid": [config.size, config.size],
        "pixel_mm": config.grid_mm,
        "centre": "brain bounding box (field of view without images)",
        "resampling": "linear interpolation of the 0/1 mask, >= 0.5",
        "min_pixels": config.min_pixels,
    }


class _Loop:
    """Epochs of a run: deterministic batches, validation, metrics and checkpoints."""

    def __init__(
        self,
        model: torch.nn.ModuleDict,
        optimizer: torch.optim.Optimizer,
        loss_fn: torch.nn.Module,
        data: MaskSet,
        config: AutoencoderConfig,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.data, self.config, self.device = data, config, device

    def run(
        self,
        state: RunState,
        train_idx: NDArray[np.int64],
        val_idx: NDArray[np.int64],
        *,
        run_dir: Path,
        meta: dict[str, Any],
        bar: Any,
    ) -> None:
        """Train from ``state`` to ``config.epochs``, writing into ``run_dir``."""
        cfg = self.config
        if not len(train_idx):
            raise ValueError("no training masks left after the validation split")
        sampler = EpochSampler(
            [True] * len(train_idx), length=cfg.steps_per_epoch * cfg.batch_size, seed=cfg.seed
        )
        while state.epoch < cfg.epochs:
            sampler.set_epoch(state.epoch, skip=state.step * cfg.batch_size)
            keys, losses, start = list(sampler), [], time.perf_counter()
            for first in range(0, len(keys), cfg.batch_size):
                losses.append(self.step(train_idx, keys[first : first + cfg.batch_size]))
                state.step += 1
                state.global_step += 1
                bar.advance(losses[-1])
                every = cfg.save_every_steps
                if every and state.step % every == 0 and state.step < cfg.steps_per_epoch:
                    self.save(run_checkpoint(run_dir), state, meta)
            metrics = self.validate(val_idx)
            state.epoch, state.step = state.epoch + 1, 0
            if metrics and metrics["dice_mean"] > state.best_metric:
                state.best_metric, state.best_epoch = metrics["dice_mean"], state.epoch
            row = {
                "epoch": state.epoch,
                "global_step": state.global_step,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "lr": cfg.lr,
                "seconds": round(time.perf_counter() - start, 2),
                **metrics,
            }
            bar.epoch_done(state.epoch, row)
            append_metrics(run_dir / RUN_METRICS, row)
            self.save(run_checkpoint(run_dir), state, meta)
            if state.best_epoch == state.epoch:
                self.save(run_checkpoint(run_dir, "best"), state, meta)

    def step(self, train_idx: NDArray[np.int64], keys: list[tuple[int, int]]) -> float:
        batch = self.data.masks[train_idx[[k[0] for k in keys]]]
        if self.config.flip:
            flips = [np.random.default_rng(seed).random() < 0.5 for _, seed in keys]
            batch = np.where(np.asarray(flips)[:, None, None], batch[:, ::-1, :], batch)
        self.model.train()
        x = _tensor(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model["decoder"](self.model["encoder"](x)), x)
        if not bool(loss.isfinite()):
            raise FloatingPointError(f"loss became {loss.item()}; lower the learning rate")
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def validate(self, val_idx: NDArray[np.int64]) -> dict[str, float]:
        if not len(val_idx):
            return {}
        ref = self.data.masks[val_idx]
        return {"dice_mean": float(dice_per_mask(reconstruct(self.model, ref), ref).mean())}

    def save(self, path: Path, state: RunState, meta: dict[str, Any]) -> None:
        save_checkpoint(
            path,
            {
                "format": CHECKPOINT_FORMAT,
                **meta,
                "state_dict": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": asdict(state),
                "torch_rng": torch.get_rng_state(),
            },
        )


def _finish(run: Path, val_idx: NDArray[np.int64]) -> None:
    if not len(val_idx):  # without validation the last weights are the best we have
        with atomic_path(run_checkpoint(run, "best")) as tmp:
            shutil.copyfile(run_checkpoint(run), tmp)
    plot_curves(run)


__all__ = [
    "MASKS_FILE",
    "RESUME_CHANGES",
    "train_autoencoder",
]
