"""Command-line interface: ``main()`` and the parser, assembled from one module per command.

Each command lives in ``gliomaseg.cli.<command>`` with ``register(sub)``, ``add_arguments``
and ``run(args) -> int``; the shared flag groups and the help formatter are in
:mod:`gliomaseg.cli.options`, failure lines and progress bars in :mod:`gliomaseg.cli.console`.
Heavy imports (torch, matplotlib, monai) happen inside the commands so ``--help`` is instant.
Exit codes (:mod:`gliomaseg.core.errors`): 0 success, 2 bad input (one line on stderr naming
the file and the fix), 1 other failures. Batch commands continue past a bad case and exit 2
at the end, listing failures.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn

from gliomaseg import __version__
from gliomaseg.cli import demo, inspect, prepare, segment, synth
from gliomaseg.cli import train as train_cmds
from gliomaseg.cli.console import run_guarded
from gliomaseg.cli.options import DefaultsHelpFormatter, walk_parsers
from gliomaseg.core.errors import EXIT_FAIL, EXIT_OK, one_line

log = logging.getLogger("gliomaseg")

__all__ = ["DefaultsHelpFormatter", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``gliomaseg`` parser: global flags and every command's subparser, in help order."""
    parser = argparse.ArgumentParser(
        prog="gliomaseg",
        description="Brain tumour (glioma) segmentation on multi-modal MRI.",
    )
    parser.add_argument("--version", action="version", version=f"gliomaseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="log everything and show the full traceback of any error (for bug reports)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    inspect.register(sub)
    prepare.register(sub)
    train_cmds.add_train_command(sub)
    segment.register(sub)
    _register_stage_commands(sub)
    train_cmds.add_bundle_command(sub)
    train_cmds.add_models_command(sub)
    synth.register(sub)
    demo.register(sub)
    for each in walk_parsers(parser):
        each.formatter_class = DefaultsHelpFormatter
    return parser


def _register_stage_commands(sub: Any) -> None:
    """evaluate, explain, autoencoder and the report commands (their flags live in their modules)."""
    p = sub.add_parser("evaluate", help="Dice, IoU, HD95... of predictions against references")
    from gliomaseg.cli import evaluate

    evaluate.add_arguments(p)
    p.set_defaults(func=evaluate.run)

    from gliomaseg.cli import autoencoder, explain
    from gliomaseg.cli import report as report_cmds

    p = sub.add_parser(
        "explain", help="features, plain-language summary and 3D surface of a segmentation"
    )
    explain.add_arguments(p)
    p.set_defaults(func=explain.run)

    autoencoder.add_arguments(sub)  # "autoencoder train|embed"

    p = sub.add_parser("report", help="one self-contained HTML report per segmented case")
    report_cmds.add_report_arguments(p)
    p.set_defaults(func=report_cmds.run_report)

    p = sub.add_parser("report-cohort", help="HTML page over 'gliomaseg evaluate' output")
    report_cmds.add_cohort_arguments(p)
    p.set_defaults(func=report_cmds.run_cohort)

    p = sub.add_parser("report-training", help="HTML page over a training run folder")
    report_cmds.add_training_arguments(p)
    p.set_defaults(func=report_cmds.run_training)


class _LineFormatter(logging.Formatter):
    """Log records as the CLI's own lines: ``gliomaseg: error: ...``, ``gliomaseg: ...``."""

    LEVELS: ClassVar[dict[int, str]] = {
        logging.ERROR: "error: ",
        logging.CRITICAL: "error: ",
        logging.WARNING: "warning: ",
    }

    def format(self, record: logging.LogRecord) -> str:
        level = self.LEVELS.get(record.levelno, "")
        text = f"gliomaseg: {level}{one_line(record.getMessage())}"
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return text


def run() -> NoReturn:
    """The ``gliomaseg`` console script: :func:`main`, then exit without tearing down.

    Interpreter finalisation after ``import torch`` takes about 0.45 s on 2 threads (module
    and C++ static teardown; measured here, 2026-11-29): a tenth of a cold ``segment``.
    Nothing is owed to it: the exit handlers (``atexit``: logging's flush, temporary-file
    finalisers) run, stdout and stderr are flushed, every file we write is closed
    (atomic writes) and no thread is left running, then the process ends with ``os._exit``.
    """
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            code = code or EXIT_FAIL
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    logging.basicConfig(
        level=logging.DEBUG if args.verbose or args.debug else logging.INFO,
        handlers=[handler],
        force=True,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    return run_guarded(args.func, args)


# --------------------------------------------------------------------------- train


#: ``train`` flags that override a config setting of the same name.
