"""The README's table of training runs, from the JSON that ``bench/accuracy.py`` printed.

One row per accuracy report: the recipe (the model card's training preset), ensemble size,
training hours (the sum over members of the epochs' wall-clock seconds, from the card), CPU
hours (the CPU time the training processes spent, all threads, where the runs recorded it: the
budget whatever else shared the machine), the
number of patients scored and, per region, the mean, median and worst per-patient 3D Dice and
the mean HD95. A report from ``--choose-postprocessing`` adds the nested (unbiased) estimate
of the chosen postprocessing; every row is given with and without postprocessing. A report
of ``bench/accuracy.py --with OTHER.pt`` counts the members and hours of every bundle (their
cards beside them).

    .venv/bin/python bench/runs_table.py brats-cv.json old-brats-unseen.json > table.json

Prints one JSON object whose ``markdown`` field is the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", type=Path, nargs="+", help="bench/accuracy.py JSON outputs")
    parser.add_argument(
        "--label", action="append", default=[], help="row label per report (default: the note)"
    )
    parser.add_argument(
        "--card",
        action="append",
        default=[],
        help="model card per report, '-' for the one beside the scored model (default); e.g. "
        "an older card from git: git show REV:src/gliomaseg/weights/brats.json > old.json",
    )
    return parser.parse_args(argv)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _hours(per_card: list[list[float | None] | None], *, complete: bool = False) -> float | None:
    """Sum of every card's per-member seconds, in hours; None when a card lacks them (or, with
    ``complete``, when a member's are missing)."""
    if None in per_card or (complete and any(None in s for s in per_card if s)):
        return None
    return round(sum(v for s in per_card if s for v in s if v) / 3600, 2)


def row(report: dict[str, Any], label: str, card_path: Path | None = None) -> dict[str, Any]:
    """One table row: recipe, size, hours, and per-region Dice/HD95 statistics."""
    results = report["results"]
    card_path = card_path or Path(results["model"]).with_suffix(".json")
    partners = [Path(p).with_suffix(".json") for p in report.get("settings", {}).get("with", [])]
    cards = [json.loads(p.read_text()) if p.exists() else {} for p in [card_path, *partners]]
    # Hours only when every bundle's card has them: a partial sum would understate the budget.
    seconds = [c.get("training_seconds") or None for c in cards]
    cpu = [c.get("training_cpu_seconds") or None for c in cards]
    out: dict[str, Any] = {
        "label": label,
        "recipe": cards[0].get("training_config", {}).get("name", "?"),
        "members": sum(len(c.get("folds", [])) for c in cards) or None,
        "training_hours": _hours(seconds),
        "cpu_hours": _hours(cpu, complete=True),
        "patients": results["n_patients"],
        "unseen": bool(report.get("settings", {}).get("unseen")),
        "postprocessing": results["postprocessing"],
        "date": report["date"],
        "cpu": report["machine"].get("cpu") if isinstance(report["machine"], dict) else None,
    }
    for key, name in (
        ("cross_validation", "with_postprocessing"),
        ("cross_validation_without_postprocessing", "without_postprocessing"),
    ):
        out[name] = {
            region: {
                "mean": stats["dice"]["mean"],
                "median": stats["dice"]["median"],
                "worst": stats["worst_five"][0]["dice"] if stats["worst_five"] else None,
                "hd95_mean": stats["hd95_mm"]["mean"],
            }
            for region, stats in results[key].items()
        }
    choice = results.get("postprocessing_choice")
    if choice:
        out["nested_mean_dice"] = choice["nested"]["mean_dice"]
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table per set of regions (BraTS WT/TC/ET, LGG tumour), in the reports' order."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r["with_postprocessing"]), []).append(r)
    return "\n\n".join(_table(list(regions), group) for regions, group in groups.items())


def _table(regions: list[str], rows: list[dict[str, Any]]) -> str:
    head = ["run", "recipe", "members", "train h", "CPU h", "patients", "postprocessing"]
    head += [f"{r} mean / median / worst" for r in regions] + ["HD95 mean mm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        for key, post in (("without_postprocessing", "none"), ("with_postprocessing", None)):
            stats = r[key]
            if post is None:
                post = ", ".join(f"{k} {v}" for k, v in r["postprocessing"].items() if v) or "none"
                if post == "none":
                    continue  # the same figures as the row above
            cells = [
                r["label"],
                r["recipe"],
                str(r["members"] or "-"),
                _fmt(r["training_hours"], 1),
                _fmt(r["cpu_hours"], 1),
                str(r["patients"]) + (" unseen" if r["unseen"] else " CV"),
                post,
            ]
            cells += [
                f"{_fmt(s['mean'])} / {_fmt(s['median'])} / {_fmt(s['worst'])}"
                for s in stats.values()
            ]
            cells.append(" / ".join(_fmt(s["hd95_mean"], 1) for s in stats.values()))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    for k, path in enumerate(args.reports):
        try:
            report = json.loads(path.read_text())
            label = args.label[k] if k < len(args.label) else report.get("note") or path.stem
            card = args.card[k] if k < len(args.card) and args.card[k] != "-" else None
            rows.append(row(report, label, Path(card) if card else None))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            print(
                f"{path}: not a readable bench/accuracy.py report ({err}); rerun it",
                file=sys.stderr,
            )
            return 2
    print(
        json.dumps({"benchmark": "runs_table", "rows": rows, "markdown": markdown(rows)}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
