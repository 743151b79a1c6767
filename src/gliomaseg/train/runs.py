"""Run bookkeeping shared by every training loop (segmentation, mask autoencoder).

Where a run is (:class:`RunState`), which device it uses, its ``metrics.csv`` (rewritten
atomically each epoch), its curves PNG, its progress display (a bar on a terminal, log lines
elsewhere) and when to take a time-based checkpoint (:class:`CheckpointClock`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gliomaseg.core.machine import native_bf16
from gliomaseg.io.atomic import write_text_atomic
from gliomaseg.io.outputs import RUN_CURVES, RUN_METRICS
from gliomaseg.train.curves import training_curves

log = logging.getLogger(__name__)


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
    #: Sum of the training losses of the current epoch's steps so far, so that an epoch
    #: resumed from a mid-epoch checkpoint reports the same mean loss as an uninterrupted
    #: one (checkpoints written before this field load with 0.0).
    epoch_loss_sum: float = 0.0


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
        training_curves(run_dir / RUN_METRICS, run_dir / RUN_CURVES)
    except ImportError:  # matplotlib missing: curves are optional, metrics.csv is not
        return


def format_duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``3h20m``: short enough for a progress line."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class CheckpointClock:
    """Says when a time-based checkpoint is due: ``minutes`` after the last one (0: never).

    A kill then loses at most ``minutes`` of training (plus one step), whatever the length
    of an epoch.
    """

    def __init__(self, minutes: float, *, clock: Any = time.monotonic) -> None:
        if minutes < 0 or not math.isfinite(minutes):
            raise ValueError(f"checkpoint interval {minutes} min must be >= 0 (0: epoch ends only)")
        self.seconds = 60.0 * minutes
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        return self.seconds > 0 and self.clock() - self.last >= self.seconds

    def reset(self) -> None:
        """Call after every checkpoint, timed or not."""
        self.last = self.clock()


class ProgressLines:
    """Training progress as log lines (rank 0): what logs, pipes and batch jobs show.

    With ``steps`` on: the first step, then one line every ``log_every`` seconds
    (``epoch 2/30  step 40/60  loss 0.4321  elapsed 3m12s  ETA 41m05s``). Every epoch ends
    with a line of its loss, validation Dice (when there is validation) and learning rate,
    with ``steps`` off too. The library only logs (``logging``); the command line shows a
    progress bar on a terminal instead (:class:`gliomaseg.cli.console.TrainingBar`, a
    subclass), so bars live in ``cli/``. :meth:`start` is called by each training run
    (once per fold of a cross-validation), :meth:`close` when it ends.
    """

    def __init__(self, *, steps: bool = True, log_every: float = 30.0, clock: Any = time.monotonic):
        self.steps, self.log_every, self.clock = steps, log_every, clock
        ProgressLines.start(self, total=0, done=0)  # the counters, not a subclass's display

    def start(self, *, total: int, done: int, steps_per_epoch: int | None = None) -> None:
        """A run of ``total`` steps begins (or resumes) after ``done`` of them."""
        self.dice = float("nan")
        self.total, self.done, self.start_done = total, done, done
        self.steps_per_epoch = steps_per_epoch
        self.begin = self.last_line = self.clock()

    def advance(self, loss: float) -> None:
        """One training step done with this loss."""
        self.done += 1
        now = self.clock()
        if self.steps and (
            self.done - self.start_done == 1 or now - self.last_line >= self.log_every
        ):
            self.last_line = now
            log.info("%s", self.line(loss, now))

    def line(self, loss: float, now: float) -> str:
        """``epoch E/N  step S/M  loss L  elapsed T  ETA T`` for the step just done."""
        elapsed = now - self.begin
        steps = self.done - self.start_done
        eta = elapsed / steps * (self.total - self.done) if steps else float("inf")
        where = f"step {self.done}/{self.total}"
        if self.steps_per_epoch:
            epoch, step = divmod(self.done - 1, self.steps_per_epoch)
            epochs = math.ceil(self.total / self.steps_per_epoch)
            where = f"epoch {epoch + 1}/{epochs}  step {step + 1}/{self.steps_per_epoch}"
        return (
            f"{where}  loss {loss:.4f}  elapsed {format_duration(elapsed)}  "
            f"ETA {format_duration(eta)}"
        )

    def epoch_text(self, epoch: int, row: dict[str, Any]) -> str:
        """``epoch E: loss L  val dice D  lr R`` (remembers the Dice for the bar)."""
        self.dice = float(row.get("dice_mean", float("nan")))
        val = f"  val dice {self.dice:.4f}" if math.isfinite(self.dice) else ""
        return f"epoch {epoch}: loss {row['train_loss']:.4f}{val}  lr {row['lr']:.2e}"

    def epoch_done(self, epoch: int, row: dict[str, Any]) -> None:
        """The epoch's line (metrics.csv's row)."""
        log.info("%s", self.epoch_text(epoch, row))

    def close(self) -> None:
        """The run ended (normally or not)."""
