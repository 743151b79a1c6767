"""Command-line glue of ``report``, ``report-cohort`` and ``report-training``.

Each command has ``add_*_arguments(parser)`` and ``run_*(args) -> int`` (0 ok, 2 bad input
with one line on stderr naming the file and the fix). Only the standard library (and the
stdlib-only ``gliomaseg.core.errors`` and ``gliomaseg.io.outputs``) is imported here; the report modules (numpy, nibabel,
matplotlib) load when a command runs, so ``gliomaseg --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, one_line
from gliomaseg.io.outputs import COHORT_REPORT, REPORT_SUFFIX, TRAINING_REPORT, case_report_path

log = logging.getLogger(__name__)


def _fail(err: BaseException) -> int:
    print(f"gliomaseg: error: {one_line(err)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _add_figures_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--figures",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write every figure as PNG here",
    )


def _print_page(write: Callable[[], Path]) -> int:
    """Write one page and print its path; a bad input is one line on stderr (exit 2)."""
    try:
        path = write()
    except (ValueError, FileNotFoundError) as err:
        return _fail(err)
    print(path)
    return EXIT_OK


# --------------------------------------------------------------------------- report


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``gliomaseg report`` (one HTML page per segmented case)."""
    parser.add_argument(
        "case_dir",
        type=Path,
        metavar="CASE_OUTPUT_DIR",
        help="output folder of 'gliomaseg segment'",
    )
    parser.add_argument(
        "--case", default=None, metavar="ID", help="case id (default: every case in the folder)"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="SEG",
        help="reference label map to outline (a NIfTI file, or a dataset folder holding the case)",
    )
    parser.add_argument(
        "--reference-scheme",
        default=None,
        help="label scheme of the reference (default: guessed from its values)",
    )
    parser.add_argument(
        "--explain",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder of 'gliomaseg explain' (default: CASE_OUTPUT_DIR)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="report file for one case, or a folder for several "
        f"(default: CASE_OUTPUT_DIR/<id>{REPORT_SUFFIX})",
    )
    _add_figures_flag(parser)
    parser.add_argument(
        "--no-viewer",
        dest="viewer",
        action="store_false",
        help="leave out the interactive viewer (default: included when the NiiVue bundle is "
        "installed; it adds about 1 MB plus the embedded volumes to each page)",
    )


def run_report(args: argparse.Namespace) -> int:
    """Run ``gliomaseg report``; a bad case is reported and the others go on (exit 2 at end)."""
    from gliomaseg.report.case import write_case_report
    from gliomaseg.report.case_data import summary_ids

    try:
        ids = [args.case] if args.case else summary_ids(args.case_dir)
        if not ids:
            raise ValueError(
                f"{args.case_dir}: no <id>_summary.json here; pass the output folder of "
                "'gliomaseg segment'"
            )
        if len(ids) > 1 and args.output is not None and args.output.suffix.lower() == ".html":
            raise ValueError(
                f"{args.output}: one file cannot hold {len(ids)} cases; pass --case ID or "
                "-o a folder"
            )
    except ValueError as err:
        return _fail(err)
    failures = 0
    for case_id in ids:
        try:
            path = write_case_report(
                args.case_dir,
                _output_for(args.output, case_id),
                case_id=case_id,
                reference=args.reference,
                reference_scheme=args.reference_scheme,
                explain_dir=args.explain,
                figures_dir=args.figures,
                viewer=args.viewer,
            )
        except (ValueError, FileNotFoundError) as err:
            failures += 1
            _fail(err)
            continue
        print(f"{case_id}: {path}")
    return EXIT_BAD_INPUT if failures else EXIT_OK


def _output_for(output: Path | None, case_id: str) -> Path | None:
    """``-o``: a ``.html`` file for one case; anything else is a folder of ``<id>_report.html``."""
    if output is None or output.suffix.lower() == ".html":
        return output
    return case_report_path(case_id, output)


# --------------------------------------------------------------------------- report-cohort


def add_cohort_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``gliomaseg report-cohort`` (one page over an evaluation)."""
    parser.add_argument(
        "eval_dir", type=Path, metavar="EVAL_DIR", help="output folder of 'gliomaseg evaluate'"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help=f"page to write (default: EVAL_DIR/{COHORT_REPORT})",
    )
    parser.add_argument(
        "--case-reports",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of <id>_report.html pages to link the cases to",
    )
    _add_figures_flag(parser)


def run_cohort(args: argparse.Namespace) -> int:
    """Run ``gliomaseg report-cohort``."""
    from gliomaseg.report.cohort import write_cohort_report

    return _print_page(
        lambda: write_cohort_report(
            args.eval_dir, args.output, case_reports=args.case_reports, figures_dir=args.figures
        )
    )


# --------------------------------------------------------------------------- report-training


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``gliomaseg report-training`` (one page over a run folder)."""
    parser.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="run folder of 'gliomaseg train'"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help=f"page to write (default: RUN_DIR/{TRAINING_REPORT})",
    )
    _add_figures_flag(parser)


def run_training(args: argparse.Namespace) -> int:
    """Run ``gliomaseg report-training``."""
    from gliomaseg.report.training import write_training_report

    return _print_page(
        lambda: write_training_report(args.run_dir, args.output, figures_dir=args.figures)
    )
