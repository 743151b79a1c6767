"""``gliomaseg inspect``: describe a case, a folder of cases or a file (table or JSON)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gliomaseg.cli.console import track
from gliomaseg.cli.options import add_layout_flags, layout_config
from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, failure_message

log = logging.getLogger("gliomaseg")


def register(sub: Any) -> None:
    """Add ``inspect`` to the subcommands ``sub`` (``add_subparsers()``'s result)."""
    p = sub.add_parser("inspect", help="describe a case, a folder of cases or a file")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg inspect`` flags to a (sub)parser."""
    p.add_argument("path", type=Path, help="case folder, folder of cases, or file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_layout_flags(p)


def run(args: argparse.Namespace) -> int:
    """Describe every case under ``args.path``; exit 2 when any could not be read."""
    from gliomaseg.core.labels import get_scheme
    from gliomaseg.io.layouts import discover, read_case
    from gliomaseg.prepare.inspect import describe

    if args.label_scheme:
        get_scheme(args.label_scheme)
    refs, bad = discover(args.path, config=layout_config(args))
    cases: list[dict] = []
    errors = [{"path": str(p), "error": msg} for p, msg in bad]
    for _, msg in bad:
        print(f"gliomaseg: error: {msg}", file=sys.stderr)
    for ref in track(refs, "inspect", enabled=len(refs) > 3 and not args.json):
        try:
            case = read_case(ref, label_scheme=args.label_scheme)
            cases.append(describe(case, ref))
        except Exception as err:  # the per-case boundary: one bad case never stops a batch
            log.debug("%s failed", ref.path, exc_info=True)
            errors.append({"path": str(ref.path), "error": failure_message(err)})
            print(f"gliomaseg: error: {failure_message(err)}", file=sys.stderr)
    if args.json:
        print(json.dumps({"cases": cases, "errors": errors}, indent=2))
    else:
        print_table(cases)
    if errors:
        print(f"gliomaseg: {len(errors)} of {len(refs) + len(bad)} case(s) failed", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def print_table(cases: list[dict]) -> None:
    """One rich table per described case, on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for c in cases:
        table = Table(
            title=f"{c['case_id']}  ({c['layout']})", show_header=False, title_justify="left"
        )
        table.add_row("modalities", ", ".join(c["modalities"]) or "-")
        table.add_row("shape / spacing", f"{tuple(c['shape'])} / {tuple(c['spacing_mm'])} mm")
        table.add_row(
            "orientation", f"{c['orientation']} (processed as {c['canonical_orientation']})"
        )
        if c.get("orientation_source") and c.get("orientation_known", True):
            table.add_row("  from", c["orientation_source"])
        table.add_row("label scheme", str(c["label_scheme"]))
        if "voxels" in c:
            for name, n in c["voxels"].items():
                table.add_row(f"  {name}", f"{n} voxels, {c['volume_ml'][name]:.2f} mL")
        for w in c["warnings"]:
            table.add_row("[yellow]warning[/]", w)
        console.print(table)
