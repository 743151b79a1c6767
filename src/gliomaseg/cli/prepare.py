"""``gliomaseg prepare``: preprocess a dataset once into a fast on-disk cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gliomaseg.cli.console import report_failures, track
from gliomaseg.cli.options import add_layout_flags, add_output, add_overwrite, layout_config


def register(sub: Any) -> None:
    """Add ``prepare`` to the subcommands ``sub`` (``add_subparsers()``'s result)."""
    p = sub.add_parser("prepare", help="preprocess a dataset once into a fast on-disk cache")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg prepare`` flags to a (sub)parser."""
    p.add_argument("data", type=Path, help="dataset folder (any supported layout)")
    add_output(p, "cache folder")
    p.add_argument("--modalities", default=None, help="comma list to keep, e.g. flair,t1,t1ce,t2")
    p.add_argument("--margin", type=int, default=2, help="voxels kept around the brain crop")
    p.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="image storage type"
    )
    p.add_argument("--folds", type=int, default=5, help="patient-level folds stored in the index")
    p.add_argument("--seed", type=int, default=0, help="seeds the assignment of patients to folds")
    add_overwrite(p, "redo cases already in the cache")
    add_layout_flags(p)


def run(args: argparse.Namespace) -> int:
    """Prepare ``args.data`` into ``args.output``; print the cache summary as JSON."""
    from gliomaseg.prepare.workflow import PrepareConfig, prepare_dataset

    cfg = PrepareConfig(
        modalities=tuple(args.modalities.split(",")) if args.modalities else None,
        margin=args.margin,
        dtype=args.dtype,
        folds=args.folds,
        seed=args.seed,
        label_scheme=args.label_scheme,
    )
    result = prepare_dataset(
        args.data,
        args.output,
        config=cfg,
        layout_config=layout_config(args),
        overwrite=args.overwrite,
        track=lambda refs: track(refs, "prepare"),
    )
    print(json.dumps(result.summary(), indent=2))
    return report_failures(
        [(str(path), msg) for path, msg in result.failures],
        f"{len(result.failures)} case(s) failed; the others are in the cache",
    )
