"""Flag groups several commands share, and the help formatter of every parser.

Each ``add_*`` function adds one group to a (sub)parser, with the same flag names and
defaults everywhere; the help text may name what the command does with the flag.
Imports nothing heavy: ``--help`` builds every parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that ends with ``(default: X)`` for every option with a default worth saying.

    Unlike :class:`argparse.ArgumentDefaultsHelpFormatter` it says nothing for ``None``,
    ``False`` and empty defaults (an option left out, a flag not given) and leaves alone a
    help that already explains its default in words. Descriptions keep their line breaks
    (the bench scripts' docstrings).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if has_default(action) and "%(default)" not in text and "default" not in text:
            text += " (default: %(default)s)"
        return text


def has_default(action: argparse.Action) -> bool:
    """Whether an option has a default a help text should state (not None, False, "" or [])."""
    default = action.default
    return (
        bool(action.option_strings)
        and default is not argparse.SUPPRESS
        and default is not None
        and default is not False
        and default not in ("", [])
    )


def walk_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases repeat a parser
                yield from walk_parsers(sub)


def add_layout_flags(parser: argparse.ArgumentParser) -> None:
    """``--label-scheme`` and ``--layout-config``: how to read cases whatever their layout."""
    parser.add_argument(
        "--label-scheme",
        default=None,
        help="override the label scheme the layout implies "
        "(brats2020, brats2023, msd, brats2013, brats2013-atropos, lgg, binary)",
    )
    parser.add_argument(
        "--layout-config",
        type=Path,
        default=None,
        help="JSON file mapping file-name globs to modalities/label (see docs)",
    )


def layout_config(args: argparse.Namespace) -> Any:
    """The :class:`gliomaseg.io.caseref.LayoutConfig` of ``--layout-config``, or None."""
    from gliomaseg.io.caseref import LayoutConfig  # lazily: --help stays fast

    return LayoutConfig.load(args.layout_config) if args.layout_config else None


def add_output(parser: argparse.ArgumentParser, help: str, *, default: Path | None = None) -> None:
    """``-o/--output``: required unless a ``default`` is given."""
    parser.add_argument(
        "-o", "--output", type=Path, required=default is None, default=default, help=help
    )


def add_overwrite(parser: argparse.ArgumentParser, help: str) -> None:
    """``--overwrite``: redo what is already there (never replacing files we did not write)."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (default auto)."""
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when present")


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bar on stderr."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
