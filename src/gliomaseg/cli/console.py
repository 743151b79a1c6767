"""What the commands print for users: failure lines, progress bars, the error boundary.

Library code logs through ``logging`` and reports progress through callbacks; only the
command line turns them into lines and bars on stderr (``rich`` is imported lazily).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, failure_line, failure_message

T = TypeVar("T")

#: Exit code of a command stopped by Ctrl-C: the shell's 128 + SIGINT, not one of
#: :mod:`gliomaseg.core.errors`' codes because shells and schedulers read it as "interrupted".
EXIT_INTERRUPTED = 130


def stderr_console() -> Any:
    """A rich console on stderr (stdout stays for results)."""
    from rich.console import Console

    return Console(stderr=True)


def track(items: list[T], label: str, *, enabled: bool = True) -> Iterable[T]:
    """Iterate with a transient rich progress bar on stderr when ``enabled``.

    The bar advances as the caller consumes the items (a lazy iterable, not a list).
    """
    if not enabled:
        return items
    from rich.progress import track as rich_track

    return rich_track(items, description=label, console=stderr_console(), transient=True)


def report_failures(failures: list[tuple[str, str]], summary: str) -> int:
    """Print one ``gliomaseg: error:`` line per failed case, then ``gliomaseg: <summary>``.

    Returns:
        :data:`EXIT_BAD_INPUT` when anything failed, else :data:`EXIT_OK` (nothing printed).
    """
    if not failures:
        return EXIT_OK
    for path, msg in failures:
        print(failure_line(path, msg), file=sys.stderr)
    print(f"gliomaseg: {summary}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_guarded(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; any error reaches the user as one line and exit code 2.

    ``args.debug`` (``gliomaseg --debug``) lets the error through with its traceback.
    """
    try:
        return func(args)
    except KeyboardInterrupt:
        print("gliomaseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # every error reaches the user as one line, exit 2
        if getattr(args, "debug", False):
            raise
        print(f"gliomaseg: error: {failure_message(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
