"""``gliomaseg report-training``: one page over a training run folder.

Reads ``metrics.csv`` (required) and ``config.json`` (optional) of a run written by
``gliomaseg train``: loss, validation metrics and learning rate per epoch, the best epoch
(highest ``dice_mean``, the model-selection metric; the last epoch when the run had no
validation), the metrics at that epoch in words, every epoch in a sortable table, and the
configuration.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from gliomaseg.io.outputs import CHECKPOINT_DIR, RUN_CONFIG, RUN_METRICS, TRAINING_REPORT
from gliomaseg.report import figures as figs
from gliomaseg.report.html import (
    Figure,
    Report,
    Section,
    definition_list,
    esc,
    fmt,
    sortable_report,
    table,
    write_page,
)
from gliomaseg.report.style import words

#: Column prefixes of metrics.csv and how to say them.
_METRIC_WORDS: dict[str, str] = {
    "slice_dice_": "slice Dice",
    "dice_": "Dice",
    "precision_": "precision",
    "recall_": "recall",
}


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, float]], dict[str, Any] | None]:
    """Rows of ``metrics.csv`` as floats (blank -> NaN) and ``config.json`` (None if absent).

    Raises:
        ValueError: missing folder or ``metrics.csv``, no ``epoch`` column, unreadable files.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder; pass a run folder of 'gliomaseg train'")
    path = root / RUN_METRICS
    if not path.is_file():
        raise ValueError(
            f"{path}: not found; the run has not finished an epoch yet (or this is not a run "
            "folder of 'gliomaseg train')"
        )
    try:
        with path.open(newline="", encoding="utf-8") as f:
            raw = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: unreadable CSV ({err}); check the run folder") from None
    if not raw or "epoch" not in raw[0]:
        raise ValueError(f"{path}: no epoch rows; train for at least one epoch first")
    rows = [{k: _float(v) for k, v in r.items() if k} for r in raw]
    config = None
    config_path = root / RUN_CONFIG
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{config_path}: unreadable JSON ({err}); check the run folder"
            ) from None
    return rows, config


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def best_epoch(rows: list[dict[str, float]]) -> int | None:
    """Epoch with the highest finite ``dice_mean`` (first on ties), else None."""
    scored = [(r["epoch"], r.get("dice_mean", math.nan)) for r in rows]
    finite = [(e, d) for e, d in scored if math.isfinite(d)]
    if not finite:
        return None
    return int(max(finite, key=lambda x: (x[1], -x[0]))[0])


def metric_words(column: str) -> str:
    """``dice_WT`` -> ``Dice, whole tumour``; ``train_loss`` -> ``training loss``."""
    fixed = {
        "train_loss": "training loss",
        "lr": "learning rate",
        "seconds": "seconds",
        "epoch": "epoch",
        "global_step": "step",
        "dice_mean": "Dice, mean over outputs",
    }
    if column in fixed:
        return fixed[column]
    for prefix, text in _METRIC_WORDS.items():
        if column.startswith(prefix):
            return f"{text}, {words(column.removeprefix(prefix))}"
    return column


def build_training_report(run_dir: str | Path) -> Report:
    """Render the page of a training run.

    Raises:
        ValueError: see :func:`read_metrics`.
    """
    rows, config = read_metrics(run_dir)
    best = best_epoch(rows)
    sections = [
        _overview(run_dir, rows, config, best),
        _curves(rows, best),
        _best(rows, best),
        _epochs(rows),
        _config(config, run_dir),
    ]
    name = (config or {}).get("name") or Path(run_dir).resolve().name
    return sortable_report(
        title=f"Training run: {name}",
        subtitle=str((config or {}).get("description") or Path(run_dir).resolve()),
        sections=sections,
    )


def write_training_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    figures_dir: str | Path | None = None,
) -> Path:
    """Write the training page atomically (default ``<run_dir>/training.html``)."""
    report = build_training_report(run_dir)
    out = Path(output) if output is not None else Path(run_dir) / TRAINING_REPORT
    return write_page(out, report.html, figures=report.figures, figures_dir=figures_dir)


def _overview(
    run_dir: str | Path,
    rows: list[dict[str, float]],
    config: dict[str, Any] | None,
    best: int | None,
) -> Section:
    last = rows[-1]
    best_row = next((r for r in rows if r["epoch"] == best), None)
    checkpoints = sorted(p.name for p in (Path(run_dir) / CHECKPOINT_DIR).glob("*.pt"))
    items: list[tuple[str, Any]] = [
        ("run folder", str(Path(run_dir).resolve())),
        (
            "epochs completed",
            f"{int(last['epoch'])}"
            + (f" of {config['epochs']}" if config and config.get("epochs") else ""),
        ),
        ("best epoch", "no validation (last epoch kept)" if best is None else best),
        ("best mean Dice", None if best_row is None else fmt(best_row.get("dice_mean"), 4)),
        ("last training loss", fmt(last.get("train_loss"), 4)),
        (
            "training time",
            f"{sum(r.get('seconds', 0) for r in rows if math.isfinite(r.get('seconds', math.nan))):.0f} s",
        ),
        ("checkpoints", ", ".join(checkpoints) or "none"),
    ]
    return Section("overview", "Overview", definition_list(i for i in items if i[1] is not None))


def _columns(rows: list[dict[str, float]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _curves(rows: list[dict[str, float]], best: int | None) -> Section:
    columns = {c: [r.get(c, math.nan) for r in rows] for c in _columns(rows) if c != "epoch"}
    png = figs.training_figure([int(r["epoch"]) for r in rows], columns, best_epoch=best)
    fig = Figure(
        "training_curves",
        png,
        alt="training loss, validation Dice, precision, recall and learning rate per epoch",
        caption="Per epoch: training loss, validation Dice per output (mean in black), "
        "precision and recall, learning rate; the dashed line marks the best epoch.",
    )
    return Section("curves", "Curves", fig.html(), figures=[fig])


def _best(rows: list[dict[str, float]], best: int | None) -> Section:
    title = "Validation metrics at the best epoch"
    row = next((r for r in rows if r["epoch"] == best), None)
    if row is None:
        return Section("best", title, omitted="the run has no validation metrics (fold -1?)")
    keys = [
        c for c in _columns(rows) if any(c.startswith(p) for p in _METRIC_WORDS) or c == "dice_mean"
    ]
    body = table(
        ["metric", f"epoch {best}"],
        [[metric_words(k), fmt(row.get(k), 4)] for k in keys],
        numeric=[False, True],
    )
    return Section("best", title, body)


def _epochs(rows: list[dict[str, float]]) -> Section:
    columns = _columns(rows)
    body = table(
        [metric_words(c) for c in columns],
        [[_cell(c, r.get(c, math.nan)) for c in columns] for r in rows],
        numeric=[True] * len(columns),
        css_class="sortable",
    )
    return Section(
        "epochs", "Every epoch", '<p class="note">Click a column header to sort.</p>' + body
    )


def _cell(column: str, value: float) -> float | int:
    if column in ("epoch", "global_step") and math.isfinite(value):
        return int(value)
    return value


def _config(config: dict[str, Any] | None, run_dir: str | Path) -> Section:
    if config is None:
        return Section("config", "Configuration", omitted=f"no config.json in {run_dir}")
    text = json.dumps(config, indent=2, sort_keys=False)
    return Section("config", "Configuration", f"<pre><code>{esc(text)}</code></pre>")
