"""``gliomaseg evaluate``: flags, the run with its progress bar, and the summary it prints.

The workflow (:mod:`gliomaseg.evaluate.workflow`, with scipy) is imported when the command
runs, so building the parser stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gliomaseg.cli.console import track
from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, one_line
from gliomaseg.evaluate.options import EMPTY_CHOICES, SCHEMES, VIEWS

if TYPE_CHECKING:
    from gliomaseg.evaluate.tables import EvaluationResult

_PROGRESS_MIN_CASES = 4
_T = TypeVar("_T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg evaluate`` flags to a (sub)parser."""
    parser.add_argument(
        "--pred",
        type=Path,
        required=True,
        metavar="DIR",
        help="prediction NIfTIs (<case_id>_seg.nii.gz)",
    )
    parser.add_argument(
        "--gt", type=Path, required=True, metavar="DIR", help="ground truth in any supported layout"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT_DIR",
        help="folder for per_case.csv, per_slice.csv, summary.json",
    )
    parser.add_argument(
        "--scheme",
        choices=SCHEMES,
        default="auto",
        help="auto: WT/TC/ET and labels (binary for LGG); binary: tumour = any non-zero label",
    )
    parser.add_argument(
        "--pred-scheme",
        default=None,
        help="label scheme of the prediction files (default: the ground truth's, else guessed)",
    )
    parser.add_argument(
        "--views", default=",".join(VIEWS), help="comma list of case,slice (CSV files to write)"
    )
    parser.add_argument(
        "--empty",
        choices=EMPTY_CHOICES,
        default="brats",
        help="empty-mask policy (brats: both empty -> Dice 1, HD95 0)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``gliomaseg evaluate`` from parsed flags; 0 ok, 2 bad input or a case failed."""
    from gliomaseg.evaluate.workflow import evaluate_folders

    views = tuple(v.strip() for v in str(args.views).split(",") if v.strip())
    try:
        result = evaluate_folders(
            args.pred,
            args.gt,
            args.output,
            scheme=args.scheme,
            views=views,
            empty=args.empty,
            pred_scheme=args.pred_scheme,
            track=_track,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"gliomaseg: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_summary(result)
    if result.errors:
        print(
            f"gliomaseg: {len(result.errors)} case(s) could not be evaluated; "
            f"see {result.summary_json}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return EXIT_OK


def _track(items: Sequence[_T]) -> Iterable[_T]:
    """A transient rich progress bar on stderr when there are several cases."""
    return track(list(items), "evaluate", enabled=len(items) >= _PROGRESS_MIN_CASES)


def _print_summary(result: EvaluationResult) -> None:
    from gliomaseg.evaluate.workflow import preview

    s = result.summary
    print(f"{s['n_cases']} case(s) evaluated -> {result.out_dir}")
    for key, metrics in s["metrics"].items():
        name = display_name(key)
        if name is None:
            continue
        d, h = metrics["dice"], metrics["hd95_mm"]
        dice_text = f"Dice {_fmt(d['mean'])} ± {_fmt(d['std'])}"
        print(f"  {name:>8}  {dice_text}   HD95 {_fmt(h['median'])} mm (median)")
    for key, label in (
        ("missing_predictions", "no prediction"),
        ("missing_references", "no ground truth"),
        ("used_to_train_model", "used to train the model (not an independent measure)"),
    ):
        if s[key]:
            print(f"  {label}: {preview(s[key])}")


def display_name(key: str) -> str | None:
    """The name a person reads for a result key: ``label1`` -> ``NCR/NET``, ``WT`` -> ``WT``.

    None for a single label that is also a region (``label3`` is ET, already printed).
    """
    from gliomaseg.core.labels import INTERNAL_NAMES, REGIONS
    from gliomaseg.evaluate.metrics import label_key

    for code, name in INTERNAL_NAMES.items():
        if key == label_key(code):
            return None if (code,) in REGIONS.values() else name
    return key


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
