"""Cross-validation: one run per fold of the prepared cache, then one bundled ensemble."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from gliomaseg.io.cache import load_index
from gliomaseg.io.outputs import run_checkpoint
from gliomaseg.models.checkpoint import load_checkpoint
from gliomaseg.train.builders import resolve_data
from gliomaseg.train.bundle import bundle_runs
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.loop import resume_training, train


def train_folds(
    config: TrainConfig,
    data: str | Path,
    output: str | Path,
    *,
    description: str,
    command: str = "",
    progress: bool = True,
    **train_options: Any,
) -> dict[str, Any]:
    """Train one run per cross-validation fold, then bundle them (one command per model).

    Runs go to ``output/fold<k>``; a finished fold is kept and an interrupted one resumed,
    so rerunning the same command continues where it stopped (with a larger
    ``config.epochs``, the folds are extended). The ensemble and its card are written to
    ``output/model.pt`` and ``output/model.json``.

    Args:
        config: :class:`gliomaseg.train.config.TrainConfig`; its ``fold`` is ignored.
        data: Dataset folder or prepared cache (the folds are the cache's).
        train_options: Passed to :func:`gliomaseg.train.loop.train` (``checkpoint_minutes``,
            ``monitor``).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    cache = resolve_data(data, output, progress=progress)
    n_folds = len(load_index(cache).get("folds") or [])
    if n_folds < 2:
        raise ValueError(f"{cache}: needs at least 2 folds for cross-validation; prepare --folds 5")
    runs = []
    for fold in range(n_folds):
        run = output / f"fold{fold}"
        last = run_checkpoint(run)
        state = load_checkpoint(last)["state"] if last.exists() else {}
        if state and (state["epoch"] >= config.epochs or state["stopped_early"]):
            runs.append(run)
            continue
        if last.exists():
            changes = {"epochs": config.epochs}
            resume_training(run, changes=changes, progress=progress, **train_options)
        else:
            train(replace(config, fold=fold), cache, run, progress=progress, **train_options)
        runs.append(run)
    return bundle_runs(runs, output / "model.pt", description=description, command=command)
