"""``gliomaseg explain``: the command line of :mod:`gliomaseg.explain.workflow`.

The workflow is imported when the command runs, so building the parser stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, failure_line, one_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg explain`` flags to a (sub)parser."""
    parser.add_argument(
        "input",
        type=Path,
        metavar="CASE|SEG",
        help="labelled case, folder of cases, or segmentation NIfTI (<case>_seg.nii.gz)",
    )
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        metavar="CASE",
        help="images of a segmentation (a case, or a folder of cases matched by id); default: "
        "the inputs recorded in <case>_summary.json beside it",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="output folder"
    )
    parser.add_argument("--no-mesh", action="store_true", help="skip the STL surface and its PNG")
    parser.add_argument(
        "--label-scheme",
        default=None,
        help="label scheme of the labels (brats2020, brats2023, msd, brats2013, lgg, binary...)",
    )
    parser.add_argument(
        "--sentences",
        type=Path,
        default=None,
        metavar="FILE",
        help="sentence library JSON (default: the shipped one; copy and edit it)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``gliomaseg explain`` from parsed flags; 0 ok, 2 bad input or a case failed."""
    from gliomaseg.explain.summary import load_library
    from gliomaseg.explain.workflow import explain_inputs

    try:
        library = load_library(args.sentences)
        result = explain_inputs(
            args.input,
            args.output,
            image=args.image,
            label_scheme=args.label_scheme,
            library=library,
            mesh=not args.no_mesh,
            on_case=print_case,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"gliomaseg: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path, msg in result.failures:
        print(failure_line(path, msg), file=sys.stderr)
    if result.failures:
        total = len(result.failures) + len(result.explanations)
        print(f"gliomaseg: {len(result.failures)} of {total} case(s) failed", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def print_case(explanation: Mapping[str, Any]) -> None:
    """Print the chosen sentences and notes of one explanation."""
    summary = explanation["summary"]
    print(f"{explanation['case_id']}:")
    for item in summary["sentences"]:
        print(f"  {item['text']}")
    for note in explanation["notes"]:
        print(f"  note: {note}")
    print(f"  -> {explanation['files']['explanation_json']}")


__all__ = ["add_arguments", "print_case", "run"]
