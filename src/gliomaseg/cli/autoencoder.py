"""``gliomaseg autoencoder train|embed``: the mask autoencoder's command line.

The parser needs only the torch-free :class:`~gliomaseg.explain.autoencoder.config.AutoencoderConfig`;
training and embedding (torch) are imported when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, failure_line, one_line
from gliomaseg.explain.autoencoder.config import AutoencoderConfig

#: ``train`` flags that set a config field of the same name.
_CONFIG_FLAGS = (
    "size",
    "latent",
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "lr",
    "seed",
    "device",
)


def add_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``autoencoder`` (with ``train`` and ``embed``) to a subparsers object.

    Returns the ``autoencoder`` parser; its ``func`` default is :func:`run`.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "autoencoder", help="learn a latent space of 2D tumour masks (train, embed)"
    )
    sub = parser.add_subparsers(dest="autoencoder_command", metavar="COMMAND", required=True)
    p = sub.add_parser("train", help="train (or --resume) a mask autoencoder")
    p.add_argument("--masks", type=Path, metavar="DIR|CACHE", help="prepared cache or cases")
    p.add_argument("-o", "--output", type=Path, metavar="RUN", help="run folder")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue a run exactly (only --epochs and --device may change)",
    )
    d = AutoencoderConfig()
    p.add_argument("--latent", type=int, help=f"latent size ({d.latent} default; 128)")
    p.add_argument("--size", type=int, help=f"mask grid side: {d.size} (default) or 128")
    p.add_argument(
        "--epochs", type=int, help=f"epochs (on --resume: the new total; default: {d.epochs})"
    )
    p.add_argument(
        "--steps-per-epoch", type=int, help=f"steps per epoch (default: {d.steps_per_epoch})"
    )
    p.add_argument("--batch-size", type=int, help=f"masks per step (default: {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default: {d.lr:g})")
    p.add_argument("--seed", type=int, help=f"seeds split, batches, weights (default: {d.seed})")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help=f"auto: CUDA when present (default: {d.device})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = sub.add_parser("embed", help="latent vectors, PCA plot and correlations of masks")
    p.add_argument("--run", type=Path, required=True, metavar="RUN", help="trained run folder")
    p.add_argument(
        "--masks", type=Path, required=True, metavar="DIR|CACHE", help="prepared cache or cases"
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="output folder"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to encode")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``gliomaseg autoencoder train|embed`` from parsed flags; 0 ok, 2 bad input."""
    try:
        if args.autoencoder_command == "train":
            return _run_train(args)
        from gliomaseg.explain.autoencoder.embed import embed

        report = embed(args.run, args.masks, args.output, device=args.device)
    except (ValueError, FileNotFoundError) as err:
        print(f"gliomaseg: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    pc1 = report["spearman"].get("PC1", {})
    print(
        f"{report['n_slices']} slice(s) of {report['n_cases']} case(s) -> {args.output}; "
        f"reconstruction Dice {report['reconstruction_dice_mean']:.3f}; PC1 vs area rho "
        f"{_fmt(pc1.get('area_mm2', {}).get('rho'))}, vs irregularity rho "
        f"{_fmt(pc1.get('irregularity', {}).get('rho'))}"
    )
    return _report_skipped(report["skipped"])


def _run_train(args: argparse.Namespace) -> int:
    from gliomaseg.cli.training_bar import training_monitor
    from gliomaseg.explain.autoencoder.data import load_masks
    from gliomaseg.explain.autoencoder.training import train_autoencoder

    progress = not args.no_progress
    monitor = training_monitor()
    given = {k: getattr(args, k) for k in _CONFIG_FLAGS}
    if args.resume:
        if args.masks is not None or args.output is not None:
            raise ValueError(
                "--resume continues a run on its own masks and folder; drop --masks and -o"
            )
        changes = {k: v for k, v in given.items() if k != "epochs"}
        state = train_autoencoder(
            None,
            None,
            args.resume,
            resume=True,
            epochs=args.epochs,
            changes=changes,
            progress=progress,
            monitor=monitor,
        )
        skipped: list[dict[str, str]] = []
    else:
        if args.masks is None or args.output is None:
            raise ValueError("autoencoder train needs --masks DIR|CACHE and -o RUN (or --resume)")
        config = AutoencoderConfig(**{k: v for k, v in given.items() if v is not None})
        data, failures = load_masks(args.masks, config=config)
        skipped = [{"path": p, "reason": m} for p, m in failures]
        state = train_autoencoder(
            config, data, args.output, source=str(args.masks), progress=progress, monitor=monitor
        )
    best = "-" if state.best_epoch < 0 else f"{state.best_metric:.4f} at epoch {state.best_epoch}"
    print(
        f"done: {state.epoch} epoch(s), best validation Dice {best}; "
        f"run folder {args.resume or args.output}"
    )
    return _report_skipped(skipped)


def _report_skipped(skipped: list[dict[str, str]]) -> int:
    for item in skipped:
        print(failure_line(item["path"], item["reason"]), file=sys.stderr)
    if skipped:
        print(f"gliomaseg: {len(skipped)} input(s) skipped", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


__all__ = ["add_arguments", "run"]
