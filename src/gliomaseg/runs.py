"""Run bookkeeping shared by every training loop (segmentation, mask autoencoder).

Where a run is (:class:`RunState`), which device it uses, its ``metrics.csv`` (rewritten
atomically each epoch), its curves PNG and its progress bar.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gliomaseg.io.atomic import write_text_atomic
from gliomaseg.machine import native_bf16


@dataclass
class RunState:
    """Where a run is: epochs completed, steps into the current epoch, best validation."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda asked for but no CUDA device is available; use --device cpu"
        )
    return torch.device(name)


def use_bf16(device: torch.device, requested: bool) -> bool:
    """Whether to run bf16 autocast: when asked, on CUDA and on CPUs with native bf16.

    On other CPUs bf16 is emulated and slower than float32, so the request is ignored there.
    """
    return requested and (device.type == "cuda" or (device.type == "cpu" and native_bf16()))


def dist_info() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not distributed."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch to metrics.csv (rewritten whole, atomically, so columns can grow)."""
    rows: list[dict[str, Any]] = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < int(row["epoch"])]
    rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def plot_curves(run_dir: Path) -> None:
    """``curves.png`` from ``metrics.csv`` (skipped when matplotlib is missing)."""
    try:
        from gliomaseg.plots import training_curves
    except ImportError:  # matplotlib missing: curves are optional, metrics.csv is not
        return
    training_curves(run_dir / "metrics.csv", run_dir / "curves.png")


class TrainingProgress:
    """rich progress bar with the running loss and the last validation Dice (rank 0 only)."""

    def __init__(self, *, enabled: bool, total: int, done: int):
        self.enabled = enabled
        self.dice = float("nan")
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task("train", total=total, completed=done, info="")
        self.progress.start()

    def advance(self, loss: float) -> None:
        if self.enabled:
            self.progress.update(
                self.task, advance=1, info=f"loss {loss:.4f}  val dice {self.dice:.3f}"
            )

    def epoch_done(self, epoch: int, row: dict[str, Any]) -> None:
        self.dice = float(row.get("dice_mean", float("nan")))
        if self.enabled:
            self.progress.console.print(
                f"epoch {epoch}: loss {row['train_loss']:.4f}  val dice {self.dice:.4f}  lr {row['lr']:.2e}"
            )

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
