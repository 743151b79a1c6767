"""Command-line interface: thin wrappers that parse flags and call the library.

Heavy imports (torch, matplotlib, monai) happen inside the commands so ``--help`` is instant.
Exit codes: 0 success, 2 bad input (one line on stderr naming the file and the fix), 1 other
failures. Batch commands continue past a bad case and exit 2 at the end, listing failures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from gliomaseg import __version__
from gliomaseg.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    InputError,
    failure_line,
    failure_message,
    one_line,
)

log = logging.getLogger("gliomaseg")


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


def _add_layout_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--label-scheme",
        default=None,
        help="override the label scheme the layout implies "
        "(brats2020, brats2023, msd, brats2013, brats2013-atropos, lgg, binary)",
    )
    p.add_argument(
        "--layout-config",
        type=Path,
        default=None,
        help="JSON file mapping file-name globs to modalities/label (see docs)",
    )


def _build_parser() -> argparse.ArgumentParser:
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

    p = sub.add_parser("inspect", help="describe a case, a folder of cases or a file")
    p.add_argument("path", type=Path, help="case folder, folder of cases, or file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_layout_flags(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("prepare", help="preprocess a dataset once into a fast on-disk cache")
    p.add_argument("data", type=Path, help="dataset folder (any supported layout)")
    p.add_argument("-o", "--output", type=Path, required=True, help="cache folder")
    p.add_argument("--modalities", default=None, help="comma list to keep, e.g. flair,t1,t1ce,t2")
    p.add_argument("--margin", type=int, default=2, help="voxels kept around the brain crop")
    p.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="image storage type"
    )
    p.add_argument("--folds", type=int, default=5, help="patient-level folds stored in the index")
    p.add_argument("--seed", type=int, default=0, help="seeds the assignment of patients to folds")
    p.add_argument("--overwrite", action="store_true", help="redo cases already in the cache")
    _add_layout_flags(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train a segmentation network (preset or config file)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--preset",
        help="a shipped preset name (see --list-presets; default: one that fits the data and "
        "the machine: brats-cpu or lgg-cpu-128 on a CPU, brats-regions or "
        "residual-unet-lgg-dice-bce on a GPU)",
    )
    src.add_argument("--config", type=Path, help="a JSON training config")
    src.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run exactly (--epochs extends it; --device, --workers may change)",
    )
    src.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--data", type=Path, help="raw dataset folder or a prepared cache")
    p.add_argument("-o", "--output", type=Path, help="run folder")
    preset = "default: the preset's"
    p.add_argument(
        "--epochs", type=int, help=f"epochs ({preset}; with --resume: the new total, extending)"
    )
    p.add_argument("--steps-per-epoch", type=int, help=f"training steps per epoch ({preset})")
    p.add_argument("--batch-size", type=int, help=f"samples per step ({preset})")
    p.add_argument("--lr", type=float, help=f"learning rate ({preset})")
    p.add_argument(
        "--fold", type=int, help=f"validation fold of the cache (-1: no validation; {preset})"
    )
    p.add_argument(
        "--cv",
        action="store_true",
        help="train every fold into -o/fold<k> (resumable) and bundle them into -o/model.pt",
    )
    p.add_argument(
        "--extra-data",
        help="extra labelled cases (folder or cache) that only join training, e.g. automatic labels",
    )
    p.add_argument(
        "--extra-fraction", type=float, help=f"share of each epoch from --extra-data ({preset})"
    )
    p.add_argument("--seed", type=int, help=f"seeds sampling, augmentation, weights ({preset})")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help=f"auto: CUDA when present ({preset}, which is auto)",
    )
    p.add_argument("--workers", type=int, help=f"data-loader worker processes ({preset})")
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=5.0,
        metavar="MIN",
        help="also checkpoint inside an epoch after this many minutes, so a kill loses at most "
        "that much (0: epoch ends only; default: %(default)s)",
    )
    p.add_argument(
        "--log-every",
        type=float,
        default=30.0,
        metavar="SEC",
        help="seconds between progress lines when stderr is not a terminal (default: %(default)s)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar or progress lines (epoch lines still)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="segment cases: masks in the input geometry + summaries")
    p.add_argument("inputs", type=Path, nargs="+", help="case folders, parent folders, LGG folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument(
        "--model",
        default=None,
        help="bundled model name, checkpoint path or training run folder (default: chosen "
        "from the input's modalities: lgg for LGG TIFF folders, else brats)",
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present"
    )
    p.add_argument("--tta", action="store_true", help="average over in-plane flips")
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
        "(default: the value validated in cross-validation, see README 'Review flags')",
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
    p.add_argument("--overwrite", action="store_true", help="redo cases that have outputs")
    p.add_argument("--part", default="1/1", help="i/n: process every n-th case starting at i")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("evaluate", help="Dice, IoU, HD95... of predictions against references")
    from gliomaseg.evaluate import workflow as evaluate

    evaluate.add_arguments(p)
    p.set_defaults(func=evaluate.run)

    from gliomaseg.cli import report as report_cmds
    from gliomaseg.explain import autoencoder
    from gliomaseg.explain import workflow as explain

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

    p = sub.add_parser("bundle", help="merge fold runs into one shippable ensemble + model card")
    p.add_argument("runs", type=Path, nargs="+", help="run folders, one per fold")
    p.add_argument("-o", "--output", type=Path, required=True, help="destination .pt")
    p.add_argument("--description", required=True, help="one line for 'gliomaseg models'")
    p.add_argument("--command", default="", help="the training command(s), for the card")
    p.add_argument("--checkpoint", default="last.pt", help="checkpoint of each run")
    p.add_argument(
        "--cache",
        type=Path,
        help="the runs' prepared cache (default: the path stored in the runs' checkpoints)",
    )
    p.add_argument("--min-component-ml", type=float, default=0.0, help="recommended postprocessing")
    p.add_argument(
        "--et-to-ncr-below-ml", type=float, default=0.0, help="recommended postprocessing"
    )
    p.add_argument("--note", action="append", default=[], help="a line for the card's notes")
    p.add_argument(
        "--case-alias",
        action="append",
        default=[],
        metavar="ALIAS=ID",
        help="another name of a training case (e.g. a Kaggle HDF5 patient or another release's "
        "id), so segment marks it as a training case too; repeatable",
    )
    p.set_defaults(func=_cmd_bundle)

    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("synth", help="write a synthetic multi-modal case in any layout")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
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
    p.set_defaults(func=_cmd_synth)

    from gliomaseg.cli import demo

    p = sub.add_parser("demo", help="segment, evaluate, explain and report a generated case")
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)
    for each in walk_parsers(parser):
        each.formatter_class = DefaultsHelpFormatter
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gliomaseg`` console script; returns the exit code."""
    parser = _build_parser()
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
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("gliomaseg: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every error reaches the user as one line, exit 2
        if args.debug:
            raise
        print(f"gliomaseg: error: {failure_message(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _load_config(args: argparse.Namespace) -> object | None:
    from gliomaseg.io.caseref import LayoutConfig

    return LayoutConfig.load(args.layout_config) if args.layout_config else None


# --------------------------------------------------------------------------- inspect


def _cmd_inspect(args: argparse.Namespace) -> int:
    from gliomaseg.core.labels import get_scheme
    from gliomaseg.io.caseref import LayoutConfig
    from gliomaseg.io.layouts import discover, read_case
    from gliomaseg.prepare.inspect import describe

    if args.label_scheme:
        get_scheme(args.label_scheme)
    config = _load_config(args)
    refs, bad = discover(args.path, config=config if isinstance(config, LayoutConfig) else None)
    cases: list[dict] = []
    errors = [{"path": str(p), "error": msg} for p, msg in bad]
    for _, msg in bad:
        print(f"gliomaseg: error: {msg}", file=sys.stderr)
    for ref in _progress(refs, "inspect", enabled=len(refs) > 3 and not args.json):
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
        _print_inspect_table(cases)
    if errors:
        print(f"gliomaseg: {len(errors)} of {len(refs) + len(bad)} case(s) failed", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _print_inspect_table(cases: list[dict]) -> None:
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


def _progress(items: list, label: str, *, enabled: bool = True) -> list:
    """Iterate with a rich progress bar on stderr when ``enabled``."""
    if not enabled:
        return items
    from rich.progress import track

    return list(track(items, description=label, console=_stderr_console(), transient=True))


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# --------------------------------------------------------------------------- prepare


def _cmd_prepare(args: argparse.Namespace) -> int:
    from gliomaseg.io.caseref import LayoutConfig
    from gliomaseg.prepare.workflow import PrepareConfig, prepare_dataset

    config = _load_config(args)
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
        layout_config=config if isinstance(config, LayoutConfig) else None,
        overwrite=args.overwrite,
        progress=True,
    )
    print(json.dumps(result.summary(), indent=2))
    if result.failures:
        for path, msg in result.failures:
            print(failure_line(path, msg), file=sys.stderr)
        print(
            f"gliomaseg: {len(result.failures)} case(s) failed; the others are in the cache",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return EXIT_OK


# --------------------------------------------------------------------------- train


def _cmd_train(args: argparse.Namespace) -> int:
    from gliomaseg.train.loop import choose_preset, list_presets, load_config, train

    if args.list_presets:
        for name in list_presets():
            print(f"{name:40s} {load_config(name).description}")
        return EXIT_OK
    progress = not args.no_progress
    options = {
        "progress": progress,
        "checkpoint_minutes": args.checkpoint_every,
        "log_every": args.log_every,
    }
    if args.checkpoint_every < 0 or args.log_every <= 0:
        raise InputError("--checkpoint-every must be >= 0 and --log-every > 0")
    if args.resume:
        if args.data is not None or args.output is not None or args.cv:
            raise InputError(
                f"--resume {args.resume} continues the run with its own data and folder; "
                "leave out --data, -o and --cv (rerun the --cv command to resume folds)"
            )
        changes = {k: getattr(args, k) for k in _TRAIN_OVERRIDES}
        if args.extra_data is not None:
            changes["extra_data"] = str(args.extra_data)
        state = train(None, None, args.resume, resume=True, changes=changes, **options)
    else:
        if args.data is None or args.output is None:
            raise InputError("train needs --data DIR and -o RUN_DIR (or --resume RUN_DIR)")
        preset = args.preset or args.config
        if preset is None:
            preset, line = choose_preset(args.data, args.device or "auto")
            log.info("%s", line)
        config = load_config(
            preset,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            lr=args.lr,
            fold=args.fold,
            extra_data=str(args.extra_data) if args.extra_data else None,
            extra_fraction=args.extra_fraction,
            seed=args.seed,
            device=args.device,
            workers=args.workers,
        )
        if args.cv:
            from gliomaseg.train.bundle import train_folds

            card = train_folds(
                config,
                args.data,
                args.output,
                description=config.description,
                command="gliomaseg " + " ".join(sys.argv[1:]),
                **options,
            )
            print(f"done: {card['ensemble']}; model {args.output / 'model.pt'} and its card")
            return EXIT_OK
        state = train(config, args.data, args.output, **options)
    run = Path(str(args.resume or args.output))
    print(done_line(state, run))
    return EXIT_OK


#: ``train`` flags that override a config setting of the same name.
_TRAIN_OVERRIDES = (
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "lr",
    "fold",
    "extra_fraction",
    "seed",
    "device",
    "workers",
)


def done_line(state: Any, run: Path) -> str:
    """The last line of ``gliomaseg train``: epochs, the kept checkpoint, the run folder."""
    if state.best_epoch < 0:
        return (
            f"done: {state.epoch} epoch(s), no validation (fold -1 or no labelled validation "
            f"case): the last epoch is kept (checkpoints/last.pt, also best.pt); run folder {run}"
        )
    return (
        f"done: {state.epoch} epoch(s), best validation Dice {state.best_metric:.4f} at epoch "
        f"{state.best_epoch} (checkpoints/best.pt); run folder {run}"
    )


# --------------------------------------------------------------------------- segment


def _parse_part(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--part '{text}' must look like i/n, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise InputError(f"--part '{text}': need 1 <= i <= n")
    return i, n


def _cmd_segment(args: argparse.Namespace) -> int:
    from gliomaseg.core.labels import get_scheme
    from gliomaseg.segment.postprocess import PostprocessConfig
    from gliomaseg.segment.workflow import SegmentConfig, segment_inputs

    if args.labels != "input":
        get_scheme(args.labels)
    if args.flag_threshold is not None and not 0.0 <= args.flag_threshold <= 1.0:
        raise InputError("--flag-threshold must be between 0 and 1")
    config = SegmentConfig(
        device=args.device,
        tta=args.tta,
        save_probabilities=args.save_probabilities,
        flag_threshold=args.flag_threshold,
        labels=args.labels,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        postprocess=None
        if args.min_component_ml is None and args.et_to_ncr_below_ml is None
        else PostprocessConfig(args.min_component_ml or 0.0, args.et_to_ncr_below_ml or 0.0),
    )
    result = segment_inputs(
        args.inputs,
        args.output,
        model=args.model,
        config=config,
        part=_parse_part(args.part),
        progress=not args.no_progress,
    )
    for case_id in result.done:
        print(f"{case_id}: {args.output / (case_id + '_seg.nii.gz')}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} finished case(s) (use --overwrite to redo)")
    for path, msg in result.failures:
        print(failure_line(path, msg), file=sys.stderr)
    if result.failures:
        failed = ", ".join(Path(p).name for p, _ in result.failures)
        print(f"gliomaseg: {len(result.failures)} case(s) failed: {failed}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _aliases(pairs: list[str]) -> dict[str, str]:
    """``ALIAS=ID`` strings as a dict; a malformed one is an InputError."""
    out = {}
    for pair in pairs:
        alias, sep, case_id = pair.partition("=")
        if not sep or not alias or not case_id:
            raise InputError(
                f"--case-alias {pair!r}: expected ALIAS=ID, e.g. volume_7=BraTS19_CBICA_ABM_1"
            )
        out[alias] = case_id
    return out


def _cmd_bundle(args: argparse.Namespace) -> int:
    from gliomaseg.train.bundle import bundle_runs

    card = bundle_runs(
        args.runs,
        args.output,
        description=args.description,
        command=args.command,
        checkpoint=args.checkpoint,
        postprocess={
            "min_component_ml": args.min_component_ml,
            "et_to_ncr_below_ml": args.et_to_ncr_below_ml,
        },
        card={
            **({"notes": args.note} if args.note else {}),
            **({"training_case_aliases": _aliases(args.case_alias)} if args.case_alias else {}),
        }
        or None,
        cache=args.cache,
    )
    print(f"wrote {args.output} ({card['ensemble']}) and {args.output.with_suffix('.json')}")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from gliomaseg.segment.workflow import WEIGHTS_DIR
    from gliomaseg.train.bundle import card_lines

    cards = sorted(WEIGHTS_DIR.glob("*.json"))
    if not cards:
        print("no bundled models yet; train one with 'gliomaseg train' and pass --model PATH")
    for card in cards:
        print("\n".join(card_lines(card)))
        print()
    return EXIT_OK


# --------------------------------------------------------------------------- synth / demo


def _cmd_synth(args: argparse.Namespace) -> int:
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
