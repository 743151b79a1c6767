"""``gliomaseg demo``: the main job end to end on a generated case (or ``--case PATH``).

Steps, each the same code as its own command (its flags and its ``run``, called in-process),
all outputs under ``-o`` (default ``demo_output/``):

1. input: a BraTS-like case generated on the MNI152 template (:func:`make_brats_like`; no
   patient data ships with gliomaseg), or the user's case;
2. ``inspect`` (modalities, geometry, label volumes), printed;
3. ``segment`` with a bundled model -> ``segmentation/`` (mask in the input's geometry,
   summary with volumes and flagged slices, probability maps);
4. ``evaluate`` against the case's own labels when it has them -> ``evaluation/``, printing
   the Dice per region;
5. ``explain`` (shape features, retrieved plain-language summary, 3D surface) -> ``explain/``;
6. ``report``: one self-contained HTML page -> ``report/<case>_report.html`` (the name
   ``gliomaseg report`` gives it, :func:`gliomaseg.io.outputs.case_report_path`).
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gliomaseg.cli import inspect, segment
from gliomaseg.cli.console import run_guarded
from gliomaseg.cli.options import add_device, add_output
from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK
from gliomaseg.io.outputs import PER_CASE_CSV, case_report_path, segment_outputs

log = logging.getLogger(__name__)

#: One step of the demo: the command's name, its ``add_arguments`` and its ``run``.
Step = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def register(sub: Any) -> None:
    """Add ``demo`` to the subcommands ``sub`` (``add_subparsers()``'s result)."""
    p = sub.add_parser("demo", help="segment, evaluate, explain and report a generated case")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg demo`` flags to a (sub)parser."""
    add_output(parser, "output folder", default=Path("demo_output"))
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
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    """Run the demo; the exit code of the first failing step, else 0."""
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
    where = _Outputs.under(out, ref.case_id)
    for step, argv in _steps(where, case_dir, ref.case_id, model, args.device, has_label):
        code = _run_step(step, argv, debug=getattr(args, "debug", False))
        if code != EXIT_OK:
            log.error("demo stopped: the %s step failed (exit %d)", step[0], code)
            return code
    print()
    print(f"demo case:     {case_dir}")
    print(f"segmentation:  {where.seg}")
    if has_label:
        print(f"evaluation:    {where.evaluation / PER_CASE_CSV}")
        print(f"Dice against the case's labels: {_dice_line(where.evaluation / PER_CASE_CSV)}")
    print(f"explanation:   {where.explain}")
    print(f"report:        {where.report}")
    return EXIT_OK


@dataclass(frozen=True)
class _Outputs:
    """Where each step of the demo writes, under ``-o``."""

    segmentation: Path
    evaluation: Path
    explain: Path
    seg: Path  # the mask segment writes
    report: Path  # the case report

    @classmethod
    def under(cls, out: Path, case_id: str) -> _Outputs:
        seg_dir = out / "segmentation"
        return cls(
            segmentation=seg_dir,
            evaluation=out / "evaluation",
            explain=out / "explain",
            seg=segment_outputs(case_id, seg_dir).seg,
            report=case_report_path(case_id, out / "report"),
        )


def _steps(
    where: _Outputs, case_dir: Path, case_id: str, model: str, device: str, has_label: bool
) -> list[tuple[Step, list[str]]]:
    """The demo's commands and their arguments, in order (evaluate only with labels)."""
    evaluate, explain, report = _stage_steps()
    seg_dir, case = str(where.segmentation), str(case_dir)
    segment_argv = [case, "-o", seg_dir, "--model", model, "--device", device]
    report_argv = [seg_dir, "--case", case_id, "--explain", str(where.explain)]
    if has_label:
        report_argv += ["--reference", case]
    steps: list[tuple[Step, list[str]]] = [
        (("inspect", inspect.add_arguments, inspect.run), [case]),
        (
            ("segment", segment.add_arguments, segment.run),
            [*segment_argv, "--save-probabilities", "--overwrite"],
        ),
    ]
    if has_label:
        steps.append((evaluate, ["--pred", seg_dir, "--gt", case, "-o", str(where.evaluation)]))
    steps.append((explain, [str(where.seg), "-o", str(where.explain)]))
    steps.append((report, [*report_argv, "-o", str(where.report)]))
    return steps


def _stage_steps() -> tuple[Step, Step, Step]:
    """The evaluate, explain and report commands (imported here: ``--help`` stays fast)."""
    from gliomaseg.cli import evaluate
    from gliomaseg.cli import report as report_cmds
    from gliomaseg.explain import workflow as explain

    return (
        ("evaluate", evaluate.add_arguments, evaluate.run),
        ("explain", explain.add_arguments, explain.run),
        ("report", report_cmds.add_report_arguments, report_cmds.run_report),
    )


def _run_step(step: Step, argv: list[str], *, debug: bool) -> int:
    """``gliomaseg <name> <argv>`` through the command's own flags and ``run``, in-process."""
    name, add_arguments, run = step
    log.info("== %s: gliomaseg %s %s", name, name, " ".join(argv))
    parser = argparse.ArgumentParser(prog=f"gliomaseg {name}")
    add_arguments(parser)
    step_args = parser.parse_args(argv)
    step_args.debug = debug
    return run_guarded(run, step_args)


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
