"""``gliomaseg synth``: write a synthetic multi-modal case in any supported layout."""

from __future__ import annotations

import argparse
from typing import Any

from gliomaseg.cli.options import add_output
from gliomaseg.core.errors import EXIT_OK, InputError


def register(sub: Any) -> None:
    """Add ``synth`` to the subcommands ``sub`` (``add_subparsers()``'s result)."""
    p = sub.add_parser("synth", help="write a synthetic multi-modal case in any layout")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg synth`` flags to a (sub)parser."""
    add_output(p, "output folder")
    p.add_argument(
        "--layout",
        default="brats2020",
        help="brats2020, brats2023, msd, nnunet, upenn, h5, lgg-tiff",
    )
    p.add_argument("--case-id", default="synthetic_000", help="case id in the file names")
    p.add_argument("--seed", type=int, default=0, help="seeds the generated anatomy and tumour")
    p.add_argument(
        "--template",
        choices=("mni", "phantom"),
        default="mni",
        help="mni: brain-like anatomy; phantom: nested ellipsoids",
    )
    p.add_argument(
        "--brats-grid", action="store_true", help="240x240x155 at 1 mm with the BraTS affine"
    )


def run(args: argparse.Namespace) -> int:
    """Generate the case and write it; print the folder written."""
    import numpy as np

    from gliomaseg.io.writers import LAYOUTS, write_layout
    from gliomaseg.synthetic.phantoms import make_brats_like, make_case

    if args.layout not in LAYOUTS:
        raise InputError(f"unknown layout '{args.layout}'; choose one of {', '.join(LAYOUTS)}")
    rng = np.random.default_rng(args.seed)
    if args.brats_grid:
        case = make_brats_like(rng=rng, case_id=args.case_id)
    else:
        case = make_case(rng=rng, case_id=args.case_id, template=args.template)
    out = write_layout(case, args.output, layout=args.layout)
    print(out)
    return EXIT_OK
