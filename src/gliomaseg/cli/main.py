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
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from gliomaseg import __version__
from gliomaseg.cli import demo, inspect, prepare, segment, synth
from gliomaseg.cli.console import run_guarded
from gliomaseg.cli.options import DefaultsHelpFormatter, walk_parsers
from gliomaseg.core.errors import EXIT_OK, InputError, one_line

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
    _register_train(sub)
    segment.register(sub)
    _register_stage_commands(sub)
    _register_bundle_and_models(sub)
    synth.register(sub)
    demo.register(sub)
    for each in walk_parsers(parser):
        each.formatter_class = DefaultsHelpFormatter
    return parser


def _register_train(sub: Any) -> None:
    # Long: train's flags as they were; they move to cli/train.py with the train commands.
    """``train``: a preset or config, with per-flag overrides, or ``--resume``."""
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


def _register_stage_commands(sub: Any) -> None:
    """evaluate, explain, autoencoder and the report commands (their flags live in their modules)."""
    p = sub.add_parser("evaluate", help="Dice, IoU, HD95... of predictions against references")
    from gliomaseg.cli import evaluate

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


def _register_bundle_and_models(sub: Any) -> None:
    """``bundle`` (fold runs into one ensemble and its card) and ``models`` (list them)."""
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
    from gliomaseg.segment.models import WEIGHTS_DIR
    from gliomaseg.train.bundle import card_lines

    cards = sorted(WEIGHTS_DIR.glob("*.json"))
    if not cards:
        print("no bundled models yet; train one with 'gliomaseg train' and pass --model PATH")
    for card in cards:
        print("\n".join(card_lines(card)))
        print()
    return EXIT_OK
