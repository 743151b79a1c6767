"""Figures with matplotlib (Agg; imported lazily by callers)."""

from __future__ import annotations

import csv
from pathlib import Path

from gliomaseg.io.atomic import atomic_path


def training_curves(metrics_csv: str | Path, png: str | Path) -> None:
    """Loss, validation Dice and learning rate per epoch from ``metrics.csv``, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(metrics_csv).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, col("train_loss"), marker="o", color="#0072B2")
    axes[0].set(title="training loss", xlabel="epoch")
    for name in [k for k in rows[0] if k.startswith("dice_")]:
        axes[1].plot(epochs, col(name), marker="o", label=name.removeprefix("dice_"))
    axes[1].set(title="validation Dice (per patient)", xlabel="epoch", ylim=(0, 1))
    if axes[1].lines:
        axes[1].legend(fontsize=8)
    lr = col("lr")
    axes[2].plot(epochs, lr, marker="o", color="#D55E00")
    axes[2].set(title="learning rate", xlabel="epoch")
    if all(v > 0 for v in lr):
        axes[2].set_yscale("log")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
