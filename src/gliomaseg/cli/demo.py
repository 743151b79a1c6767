"""``gliomaseg demo``: the main job end to end on a generated case (or ``--case PATH``).

Steps, each the same code as its own command, all outputs under ``-o`` (default
``demo_output/``):

1. input: a BraTS-like case generated on the MNI152 template (:func:`make_brats_like`; no
   patient data ships with gliomaseg), or the user's case;
2. ``inspect`` (modalities, geometry, label volumes), printed;
3. ``segment`` with a bundled model -> ``segmentation/`` (mask in the input's geometry,
   summary with volumes and flagged slices, probability maps);
4. ``evaluate`` against the case's own labels when it has them -> ``evaluation/``, printing
   the Dice per region;
5. ``explain`` (shape features, retrieved plain-language summary, 3D surface) -> ``explain/``;
6. ``report``: one self-contained HTML page -> ``report/<case>.html``.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg demo`` flags to a (sub)parser."""
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("demo_output"), help="output folder"
    )
    parser.add_argument(
        "--case",
        type=Path,
        default=None,
        metavar="PATH",
        help="run on this case (any supported layout) instead of a generated one",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="bundled model name or checkpoint (default: lgg for LGG TIFF folders, else brats)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated case")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; the exit code of the first failing step, else 0."""
    from gliomaseg.cli.main import main as cli
    from gliomaseg.io.layouts import discover

    out: Path = args.output
    case_dir = _generate(out / "input", seed=args.seed) if args.case is None else args.case
    refs, bad = discover(case_dir)
    refs = [r for r in refs if r.layout != "nifti-file"]
    if bad or len(refs) != 1:
        problem = bad[0][1] if bad else f"found {len(refs)} cases"
        log.error("%s: demo needs exactly one readable case (%s)", case_dir, problem)
        return EXIT_BAD_INPUT
    ref = refs[0]
    model = args.model or ("lgg" if ref.layout == "lgg-tiff" else "brats")
    has_label = ref.label is not None or (
        ref.layout == "lgg-tiff" and any(Path(ref.path).glob("*_mask.tif"))
    )
    seg_dir, eval_dir = out / "segmentation", out / "evaluation"
    explain_dir, report_dir = out / "explain", out / "report"
    steps = [
        ("inspect", ["inspect", str(case_dir)]),
        (
            "segment",
            [
                "segment",
                str(case_dir),
                "-o",
                str(seg_dir),
                "--model",
                model,
                "--device",
                args.device,
                "--save-probabilities",
                "--overwrite",
            ],
        ),
    ]
    if has_label:
        steps.append(
            (
                "evaluate",
                ["evaluate", "--pred", str(seg_dir), "--gt", str(case_dir), "-o", str(eval_dir)],
            )
        )
    steps += [
        (
            "explain",
            ["explain", str(seg_dir / f"{ref.case_id}_seg.nii.gz"), "-o", str(explain_dir)],
        ),
        (
            "report",
            ["report", str(seg_dir), "--case", ref.case_id, "--explain", str(explain_dir)]
            + (["--reference", str(case_dir)] if has_label else [])
            + ["-o", str(report_dir / f"{ref.case_id}.html")],
        ),
    ]
    for name, argv in steps:
        log.info("== %s: gliomaseg %s", name, " ".join(argv))
        code = cli(argv)
        if code != EXIT_OK:
            log.error("demo stopped: the %s step failed (exit %d)", name, code)
            return code
    print()
    print(f"demo case:     {case_dir}")
    print(f"segmentation:  {seg_dir / (ref.case_id + '_seg.nii.gz')}")
    if has_label:
        print(f"evaluation:    {eval_dir / 'per_case.csv'}")
        print(f"Dice against the case's labels: {_dice_line(eval_dir / 'per_case.csv')}")
    print(f"explanation:   {explain_dir}")
    print(f"report:        {report_dir / (ref.case_id + '.html')}")
    return EXIT_OK


def _generate(folder: Path, *, seed: int) -> Path:
    import numpy as np

    from gliomaseg.io.writers import write_layout
    from gliomaseg.synthetic.phantoms import make_brats_like

    log.info("generating a BraTS-like case on the MNI152 template (seed %d) ...", seed)
    synthetic = make_brats_like(rng=np.random.default_rng(seed), case_id="demo_case")
    return write_layout(synthetic, folder, layout="brats2020")


def _dice_line(per_case: Path) -> str:
    with per_case.open() as handle:
        row = next(csv.DictReader(handle))
    regions = [r for r in ("WT", "TC", "ET", "tumour") if f"{r}_dice" in row]
    return ", ".join(f"{r} {float(row[f'{r}_dice']):.3f}" for r in regions)
