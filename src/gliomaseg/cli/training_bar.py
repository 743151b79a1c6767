"""The terminal progress bar of ``gliomaseg train`` and ``gliomaseg autoencoder train``.

Imported by those commands' handlers only (it pulls in torch through :mod:`gliomaseg.train.runs`),
so ``gliomaseg --help`` stays instant.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from gliomaseg.cli.console import stderr_console
from gliomaseg.train.runs import ProgressLines


class TrainingBar(ProgressLines):
    """A rich progress bar on stderr with the running loss and the last validation Dice; the
    epoch lines are printed above it."""

    progress: Any = None

    def start(self, *, total: int, done: int, steps_per_epoch: int | None = None) -> None:
        super().start(total=total, done=done, steps_per_epoch=steps_per_epoch)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.close()
        self.progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=stderr_console(),
        )
        self.task = self.progress.add_task("train", total=total, completed=done, info="")
        self.progress.start()

    def advance(self, loss: float) -> None:
        self.done += 1
        if self.progress is None:
            return
        dice = f"  val dice {self.dice:.3f}" if math.isfinite(self.dice) else ""
        self.progress.update(self.task, advance=1, info=f"loss {loss:.4f}{dice}")

    def epoch_done(self, epoch: int, row: dict[str, Any]) -> None:
        text = self.epoch_text(epoch, row)
        if self.progress is None:
            super().epoch_done(epoch, row)
        else:
            self.progress.console.print(text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def training_monitor(*, log_every: float = 30.0) -> ProgressLines:
    """A bar on a terminal, else log lines every ``log_every`` seconds (logs, pipes, jobs)."""
    return TrainingBar() if sys.stderr.isatty() else ProgressLines(log_every=log_every)
