"""``gliomaseg segment``: masks in the input geometry plus summaries, with a stage progress bar."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gliomaseg.cli.console import report_failures
from gliomaseg.cli.options import add_device, add_no_progress, add_output, add_overwrite
from gliomaseg.core.errors import InputError
from gliomaseg.io.outputs import segment_outputs


def register(sub: Any) -> None:
    """Add ``segment`` to the subcommands ``sub`` (``add_subparsers()``'s result)."""
    p = sub.add_parser("segment", help="segment cases: masks in the input geometry + summaries")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg segment`` flags to a (sub)parser."""
    p.add_argument("inputs", type=Path, nargs="+", help="case folders, parent folders, LGG folders")
    add_output(p, "output folder")
    p.add_argument(
        "--model",
        default=None,
        help="bundled model name, checkpoint path or training run folder (default: chosen "
        "from the input's modalities: lgg for LGG TIFF folders, else brats)",
    )
    add_device(p)
    p.add_argument("--tta", action="store_true", help="average over in-plane flips")
    p.add_argument(
        "--fp32",
        action="store_true",
        help="compute in float32 (default: bf16 autocast on CUDA and on CPUs with native bf16, "
        "about 1.4x faster with Dice within 0.006 of float32; float32 elsewhere)",
    )
    p.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write probability maps (uint8, scaled 0-1)",
    )
    p.add_argument(
        "--flag-threshold",
        type=float,
        default=None,
        help="flag slices whose uncertainty score (0-1) is at/above this, at most 10 per case "
        "(default: the model's own, validated on its cross-validation predictions, else 0.3; "
        "see README 'Review flags')",
    )
    p.add_argument(
        "--labels", default="input", help="output label scheme: input, brats2020, brats2023, msd..."
    )
    p.add_argument(
        "--min-component-ml",
        type=float,
        default=None,
        help="drop smaller components (default: the model card's recommendation; 3D input only)",
    )
    p.add_argument(
        "--et-to-ncr-below-ml",
        type=float,
        default=None,
        help="relabel ET as NCR below this volume (default: the model card's; 3D input only)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="slices per forward pass")
    add_overwrite(p, "redo cases that have outputs")
    p.add_argument("--part", default="1/1", help="i/n: process every n-th case starting at i")
    add_no_progress(p)


def parse_part(text: str) -> tuple[int, int]:
    """``--part i/n`` as ``(i, n)``; anything else is an InputError."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--part '{text}' must look like i/n, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise InputError(f"--part '{text}': need 1 <= i <= n")
    return i, n


def run(args: argparse.Namespace) -> int:
    """Segment every case of ``args.inputs``; print each mask written; exit 2 on failures."""
    from gliomaseg.core.labels import get_scheme

    # torch-free: segment_inputs starts reading the first case before it imports torch
    from gliomaseg.segment.batch import segment_inputs
    from gliomaseg.segment.config import PostprocessConfig, SegmentConfig

    if args.labels != "input":
        get_scheme(args.labels)
    if args.flag_threshold is not None and not 0.0 <= args.flag_threshold <= 1.0:
        raise InputError("--flag-threshold must be between 0 and 1")
    config = SegmentConfig(
        device=args.device,
        tta=args.tta,
        fp32=args.fp32,
        save_probabilities=args.save_probabilities,
        flag_threshold=args.flag_threshold,
        labels=args.labels,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        postprocess=None
        if args.min_component_ml is None and args.et_to_ncr_below_ml is None
        else PostprocessConfig(args.min_component_ml or 0.0, args.et_to_ncr_below_ml or 0.0),
    )
    with StageProgress(enabled=not args.no_progress) as bar:
        result = segment_inputs(
            args.inputs,
            args.output,
            model=args.model,
            config=config,
            part=parse_part(args.part),
            progress=bar,
        )
    for case_id in result.done:
        print(f"{case_id}: {segment_outputs(case_id, args.output).seg}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} finished case(s) (use --overwrite to redo)")
    failed = ", ".join(Path(p).name for p, _ in result.failures)
    return report_failures(result.failures, f"{len(result.failures)} case(s) failed: {failed}")


class StageProgress:
    """A rich bar on stderr that moves at every stage of every case.

    The stages are :data:`gliomaseg.segment.plan.STAGES`.

    A single case no longer sits at 0% for the whole inference: the bar shows the case, the
    stage it is in (``BraTS_001: infer``), the stages done of all and the time elapsed. Called
    as the workflow's progress callback (:data:`gliomaseg.segment.plan.Progress`); the
    bar appears at the first case, so a run with nothing to do draws none.
    """

    def __init__(self, n_cases: int = 0, *, enabled: bool) -> None:
        from gliomaseg.segment.plan import DONE, FAILED, STAGES  # lazily: --help stays fast

        self.stages, self.end_stages = STAGES, (DONE, FAILED)
        self.enabled, self.n_cases, self.index = enabled, n_cases, -1
        self.case_id = ""
        self.started = False
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from gliomaseg.cli.console import stderr_console

        self.progress = Progress(
            TextColumn("segment"),
            BarColumn(),
            TextColumn("{task.fields[where]}"),
            TimeElapsedColumn(),
            console=stderr_console(),
        )
        self.task = self.progress.add_task("segment", total=n_cases * len(self.stages), where="")

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def __call__(self, index: int, n_cases: int, case_id: str, stage: str) -> None:
        """Case ``index`` (from 0) of ``n_cases`` enters ``stage`` (a stage, or ``done``)."""
        if n_cases != self.n_cases:
            self.n_cases = n_cases
            if self.enabled:
                self.progress.update(self.task, total=n_cases * len(self.stages))
        if stage in self.end_stages:
            self.end_case(stage)
            return
        if index != self.index:
            self.index = index - 1
            self.start_case(case_id)
        self.stage(stage)

    def start_case(self, case_id: str) -> None:
        self.index += 1
        self.case_id = case_id
        if self.enabled and not self.started:
            self.progress.start()
            self.started = True

    def stage(self, name: str) -> None:
        """Stage ``name`` of the current case begins: the stages before it are done."""
        if self.enabled:
            done = self.index * len(self.stages) + self.stages.index(name)
            case = f"case {self.index + 1}/{self.n_cases} " if self.n_cases > 1 else ""
            where = f"{case}{self.case_id}: {name}"
            self.progress.update(self.task, completed=done, where=where)

    def end_case(self, outcome: str) -> None:
        """The current case ended: ``done`` or ``failed``."""
        if self.enabled:
            done = (self.index + 1) * len(self.stages)
            self.progress.update(self.task, completed=done, where=f"{self.case_id}: {outcome}")
