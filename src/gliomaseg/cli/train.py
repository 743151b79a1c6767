"""The ``train``, ``bundle`` and ``models`` commands: parsers and handlers.

The training library is imported inside the handlers, so ``gliomaseg --help`` stays instant
(``tests/test_cold_start.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gliomaseg.core.errors import EXIT_OK, InputError
from gliomaseg.io.outputs import LAST_CHECKPOINT

log = logging.getLogger("gliomaseg")


def add_train_command(sub: Any) -> None:
    """``gliomaseg train``: one run, a resumed run, or every fold (``--cv``)."""
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
    _add_override_flags(p)
    _add_run_flags(p)
    p.set_defaults(func=_cmd_train)


def _add_override_flags(p: argparse.ArgumentParser) -> None:
    """Flags that override the config setting of the same name (:data:`_TRAIN_OVERRIDES`)."""
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
    p.add_argument(  # beside --fold in the help: the folds' other use
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


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """How the run reports and checkpoints (not settings of the model)."""
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


def add_bundle_command(sub: Any) -> None:
    """``gliomaseg bundle``: fold runs into one shippable ensemble and its model card."""
    p = sub.add_parser("bundle", help="merge fold runs into one shippable ensemble + model card")
    p.add_argument("runs", type=Path, nargs="+", help="run folders, one per fold")
    p.add_argument("-o", "--output", type=Path, required=True, help="destination .pt")
    p.add_argument("--description", required=True, help="one line for 'gliomaseg models'")
    p.add_argument("--command", default="", help="the training command(s), for the card")
    p.add_argument("--checkpoint", default=LAST_CHECKPOINT, help="checkpoint of each run")
    p.add_argument(
        "--cache",
        type=Path,
        help="the runs' prepared cache (default: the path stored in the runs' checkpoints)",
    )
    p.add_argument("--min-component-ml", type=float, default=0.0, help="recommended postprocessing")
    p.add_argument(
        "--et-to-ncr-below-ml", type=float, default=0.0, help="recommended postprocessing"
    )
    p.add_argument(
        "--flag-threshold",
        type=float,
        default=None,
        help="review-flag threshold segment uses with this model unless given one (choose it "
        "with bench/flags.py on these runs; default: segment's own, 0.3)",
    )
    p.add_argument("--note", action="append", default=[], help="a line for the card's notes")
    p.add_argument(
        "--inference-members",
        type=int,
        default=None,
        metavar="N",
        help="segment averages only the first N members (a speed budget); all runs are "
        "still stored, so bench/accuracy.py reproduces the whole cross-validation "
        "(default: every member)",
    )
    p.add_argument(
        "--case-alias",
        action="append",
        default=[],
        metavar="ALIAS=ID",
        help="another name of a training case (e.g. a Kaggle HDF5 patient or another release's "
        "id), so segment marks it as a training case too; repeatable",
    )
    p.set_defaults(func=_cmd_bundle)


def add_models_command(sub: Any) -> None:
    """``gliomaseg models``: the bundled models' cards."""
    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=_cmd_models)


def _cmd_train(args: argparse.Namespace) -> int:
    from gliomaseg.train.config import list_presets, load_config

    if args.list_presets:
        for name in list_presets():
            print(f"{name:40s} {load_config(name).description}")
        return EXIT_OK
    if args.checkpoint_every < 0 or args.log_every <= 0:
        raise InputError("--checkpoint-every must be >= 0 and --log-every > 0")
    from gliomaseg.cli.training_bar import training_monitor

    options = {
        "progress": not args.no_progress,
        "checkpoint_minutes": args.checkpoint_every,
        "monitor": training_monitor(log_every=args.log_every),
    }
    if args.resume:
        return _resume(args, options)
    if args.data is None or args.output is None:
        raise InputError("train needs --data DIR and -o RUN_DIR (or --resume RUN_DIR)")
    if args.cv:
        return _train_folds(args, options)
    from gliomaseg.train.loop import train

    state = train(_config(args), args.data, args.output, **options)
    print(done_line(state, args.output))
    return EXIT_OK


def _resume(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from gliomaseg.train.loop import resume_training

    if args.data is not None or args.output is not None or args.cv:
        raise InputError(
            f"--resume {args.resume} continues the run with its own data and folder; "
            "leave out --data, -o and --cv (rerun the --cv command to resume folds)"
        )
    changes = {k: getattr(args, k) for k in _TRAIN_OVERRIDES}
    if args.extra_data is not None:
        changes["extra_data"] = str(args.extra_data)
    state = resume_training(args.resume, changes=changes, **options)
    print(done_line(state, args.resume))
    return EXIT_OK


def _train_folds(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from gliomaseg.train.crossval import train_folds

    config = _config(args)
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


def _config(args: argparse.Namespace) -> Any:
    """The preset or config file named (or the one that fits the data), with the overrides."""
    from gliomaseg.train.config import choose_preset, load_config

    preset = args.preset or args.config
    if preset is None:
        preset, line = choose_preset(args.data, args.device or "auto")
        log.info("%s", line)
    return load_config(
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
        inference_members=args.inference_members,
        flag_threshold=args.flag_threshold,
    )
    print(f"wrote {args.output} ({card['ensemble']}) and {args.output.with_suffix('.json')}")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from gliomaseg.segment.models import WEIGHTS_DIR

    cards = sorted(WEIGHTS_DIR.glob("*.json"))
    if not cards:
        print("no bundled models yet; train one with 'gliomaseg train' and pass --model PATH")
    for card in cards:
        print("\n".join(card_lines(card)))
        print()
    return EXIT_OK


def card_lines(path: str | Path) -> list[str]:
    """What ``gliomaseg models`` prints for one model card."""
    from gliomaseg.train.bundle import read_card

    card = read_card(path)
    lines = [f"{card['name']}: {card.get('description', '')}"]
    factor = card.get("input_scale", 1)
    scale = f" at {factor:g}x in-plane resolution" if factor != 1 else ""
    lines.append(
        f"  input: {', '.join(card.get('input_channels', []))}"
        f" (+{card.get('context_slices_each_side', 0)} neighbouring slice(s) each side)"
        f"{scale}"
        f"; output: {', '.join(card.get('target', {}).get('names', []))}"
    )
    lines.append(f"  {card.get('ensemble', 'single model')}; trained {card.get('date', '?')}")
    cv = card.get("cross_validation")
    if cv:
        parts = []
        for region, stats in cv["per_patient_3d"].items():
            dice = stats["dice"]
            parts.append(f"{region} {dice['mean']:.3f} mean / {dice['median']:.3f} median")
        lines.append(
            f"  cross-validation Dice over {cv['n_patients']} patients: {'; '.join(parts)}"
            f" (measured {cv['measured'][:10]})"
        )
    else:
        lines.append("  cross-validation: not measured yet (bench/accuracy.py --update-card)")
    threshold = card.get("review", {}).get("threshold")
    if threshold is not None:
        lines.append(
            f"  review flags at uncertainty >= {threshold:g} (validated on its cross-validation; "
            "segment --flag-threshold overrides)"
        )
    if card.get("training_cases") is not None:
        lines.append(
            f"  trained on {len(card['training_cases'])} cases (training_cases in the card; "
            "segment marks them)"
        )
    return lines
