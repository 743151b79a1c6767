"""Cross-validation accuracy of a shipped model, rerun from the prepared data.

A bundled model (``gliomaseg models``) is an ensemble whose member ``i`` was trained with
fold ``i`` held out; its card lists each fold's validation patients. This script predicts
every validation patient with the one member that never saw it, exactly as ``segment`` does
(same preprocessing, whole slices, the model's recommended postprocessing unless
``--min-component-ml``, no test-time augmentation unless ``--tta``), and scores
the whole patient volume (3D) against its manual label:

* LGG (binary): per-patient Dice, IoU, precision, recall; mean, median, and the worst five;
* BraTS (regions): per-patient Dice and HD95 (mm) for WT, TC and ET, mean and median.

``--unseen`` instead scores, with the whole ensemble, every labelled patient of ``--cache``
that none of its members trained on (not in any fold of the card): how an older model does on
new patients, beside the cross-validation of a model trained on them.

``--with OTHER.pt`` (repeatable) adds CV bundles of the same folds, e.g. the same recipe
trained with another seed: each held-out patient is then predicted by the mean logits of its
fold's member of every bundle (a seed ensemble per fold, scored without nested CV), to
compare k models at 1/k of a budget with one model given all of it.

``--agreement DIR`` also runs the full ensemble on every case under DIR that carries
``brats2020_algorithms/isen-20.nii.gz`` (the BraTS 2020 winner's output on TCGA cases none
of the members trained on) and scores our mask against it. ``--update-card`` stores the
result in the model card (``src/gliomaseg/weights/<model>.json``).

Prints one JSON object with the fields the other benchmarks use (``bench/README.md``)::

    .venv/bin/python bench/accuracy.py --model lgg --cache CACHE_LGG88 > lgg_cv.json
    .venv/bin/python bench/accuracy.py --model brats --cache CACHE_BRATS \
        --agreement ../shared/data/brats_auto_labels > brats_cv.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gliomaseg.cli.main import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("--model", required=True, help="bundled model name or a bundled .pt")
    parser.add_argument("--cache", type=Path, required=True, help="prepared cache of the data")
    parser.add_argument("--agreement", type=Path, help="folder of cases with isen-20 outputs")
    parser.add_argument("--tta", action="store_true", help="average over in-plane flips")
    parser.add_argument(
        "--amp",
        action="store_true",
        help="bf16 autocast where the CPU has native bf16 (segment's default there); "
        "default: float32, as 'segment --fp32'",
    )
    parser.add_argument("--max-cases", type=int, default=None, help="per fold (smoke tests)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--min-component-ml",
        type=float,
        default=None,
        help="postprocessing to score (default: the model's recommendation, as segment does)",
    )
    parser.add_argument(
        "--choose-postprocessing",
        action="store_true",
        help="grid-search the postprocessing on the CV predictions (mean Dice over regions); "
        "score the choice made without each fold (nested, unbiased) and the choice on all "
        "patients (what ships); the rest of the report uses the latter",
    )
    parser.add_argument(
        "--unseen",
        action="store_true",
        help="score the whole ensemble on the cache's patients that no member trained on",
    )
    parser.add_argument(
        "--with",
        dest="with_models",
        type=Path,
        action="append",
        default=[],
        metavar="OTHER",
        help="another CV bundle of the same folds whose fold member joins each fold's "
        "prediction (mean logits; repeatable; default: none)",
    )
    parser.add_argument("--update-card", action="store_true", help="write results to the card")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    return parser.parse_args(argv)


def members(payload: dict[str, Any]) -> list[Any]:
    """The ensemble's member networks, in fold order, float32 and in eval mode."""
    from gliomaseg.models import ModelConfig, build_model
    from gliomaseg.models.ensemble import member_state
    from gliomaseg.models.inference import fuse_batch_norm

    config = ModelConfig.from_dict(payload["model_config"])
    nets = []
    for i in range(int(payload.get("ensemble", 1))):
        net = build_model(config, load_weights=False)
        state = member_state(payload["state_dict"], i) if payload.get("ensemble") else None
        net.load_state_dict(state or payload["state_dict"])
        nets.append(fuse_batch_norm(net.float().eval()))
    return nets


def fold_partners(payload: dict[str, Any], paths: list[Path]) -> tuple[list[list[Any]], str]:
    """The members of each ``--with`` bundle, checked against ``payload``'s folds and inputs.

    Returns:
        One list of fold members per bundle (fold order), and an error line ("" if none).
    """
    from gliomaseg.io.cache import network_axes
    from gliomaseg.models import ModelConfig, input_multiple
    from gliomaseg.models.checkpoint import input_scale, load_checkpoint

    def inputs(p: dict[str, Any]) -> tuple[Any, ...]:
        # What gliomaseg bundle requires of its runs, bar the network itself.
        multiple = input_multiple(ModelConfig.from_dict(p["model_config"]))
        scale, axes = input_scale(p), network_axes(p)
        return p["target"], p["modalities"], p.get("context", 0), scale, axes, multiple

    def folds(p: dict[str, Any]) -> list[tuple[Any, list[str]]]:
        return [(f["fold"], sorted(f["val_patients"])) for f in p.get("folds") or []]

    partners = []
    for path in paths:
        other = load_checkpoint(path)
        if folds(other) != folds(payload):
            return (
                [],
                f"{path}: its folds differ from --model's; --with needs CV runs of the same cache folds",
            )
        if inputs(other) != inputs(payload):
            return [], f"{path}: other inputs or target than --model's; --with needs the same ones"
        partners.append(members(other))
    return partners, ""


def predict_cached(
    net: Any,
    payload: dict[str, Any],
    cache: Path,
    case_id: str,
    *,
    tta: bool,
    observe: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """One prepared case predicted as ``segment`` does (whole slices, no postprocessing).

    Returns:
        The decoded prediction and the reference (x, y, Z) internal codes, the
        probabilities (K, x, y, Z) and the voxel spacing (mm), all on the cache's cropped
        grid. ``observe`` is passed to :func:`gliomaseg.models.inference.predict_volume`.
    """
    from gliomaseg.core.case import voxel_spacing
    from gliomaseg.core.targets import TargetSpec
    from gliomaseg.io.cache import load_index, open_case
    from gliomaseg.models import ModelConfig, input_multiple
    from gliomaseg.models.checkpoint import input_scale
    from gliomaseg.models.inference import predict_volume

    available = list(load_index(cache)["modalities"])
    target = TargetSpec.from_dict(payload["target"])
    image, label, meta = open_case(cache, case_id)
    probs = predict_volume(
        net,
        image,
        target=target,
        multiple=input_multiple(ModelConfig.from_dict(payload["model_config"])),
        batch_size=32,
        context=int(payload.get("context", 0)),
        channels=[available.index(m) for m in payload["modalities"]],
        tta=tta,
        input_scale=input_scale(payload),
        observe=observe,
    )
    probs = np.moveaxis(probs, 1, -1)  # (K, x, y, Z)
    ref = np.moveaxis(np.asarray(label), 0, -1)
    spacing = voxel_spacing(np.asarray(meta["affine"], dtype=np.float64))
    return target.decode(probs), ref, probs, spacing


def score_fold(
    net: Any,
    payload: dict[str, Any],
    cache: Path,
    patients: set[str],
    *,
    tta: bool,
    max_cases: int | None,
    post: Any,
    keep: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per-case metrics of one member on its held-out patients.

    With ``keep``, each case's raw prediction, reference and voxel volume are stored in it
    (by case id) for :func:`choose_postprocessing`.
    """
    from gliomaseg.core.targets import TargetSpec
    from gliomaseg.evaluate.metrics import BINARY_REGIONS, region_metrics
    from gliomaseg.io.cache import load_index
    from gliomaseg.segment.postprocess import postprocess

    index = load_index(cache)
    target = TargetSpec.from_dict(payload["target"])
    binary = sum(1 for g in target.groups if 0 not in g) == 1
    regions, labels = (BINARY_REGIONS, ()) if binary else (None, (1, 2, 3))
    cases = [c for c in index["cases"] if c["patient"] in patients and c["labelled"]]
    rows = []
    for entry in cases[:max_cases]:
        start = time.perf_counter()
        pred, ref, _, spacing = predict_cached(net, payload, cache, entry["case_id"], tta=tta)
        seconds = time.perf_counter() - start
        kwargs: dict[str, Any] = {"spacing": spacing, "labels": labels}
        if regions is not None:
            kwargs["regions"] = regions
        raw = region_metrics(pred, ref, **kwargs)
        if keep is not None:
            keep[entry["case_id"]] = (pred.copy(), ref, float(np.prod(spacing)) / 1000.0)
        pred, _ = postprocess(pred, voxel_ml=float(np.prod(spacing)) / 1000.0, config=post)
        metrics = region_metrics(pred, ref, **kwargs)
        rows.append(
            {
                "case_id": entry["case_id"],
                "patient": entry["patient"],
                "slices": int(ref.shape[-1]),
                "spacing": [float(v) for v in spacing],
                "seconds": round(seconds, 2),
                "metrics": _rounded(metrics),
                "metrics_without_postprocessing": _rounded(raw),
            }
        )
        print(f"  {entry['case_id']}: {_brief(rows[-1]['metrics'])}", file=sys.stderr)
    return rows


def unseen_patients(folds: list[dict[str, Any]], index: dict[str, Any]) -> set[str]:
    """Labelled patients of ``index`` that no member of a complete fold ensemble trained on.

    In a complete cross-validation ensemble every training patient is held out by exactly one
    member, so the union of the folds' validation patients is everything the members saw.
    """
    seen = {p for fold in folds for p in fold["val_patients"]}
    return {c["patient"] for c in index["cases"] if c["labelled"]} - seen


def _rounded(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {region: {k: _round(v) for k, v in values.items()} for region, values in metrics.items()}


def _round(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def _brief(metrics: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{region} Dice {values['dice']}"
        for region, values in metrics.items()
        if not region.startswith("label")
    )


def summarise(rows: list[dict[str, Any]], key: str = "metrics") -> dict[str, Any]:
    """Per region: mean/median/std of Dice (and HD95, IoU, precision, recall) and worst five."""
    from gliomaseg.evaluate.tables import summary_statistics

    out: dict[str, Any] = {}
    regions = [r for r in rows[0][key] if not r.startswith("label")] if rows else []
    for region in regions:
        stats = {
            name: summary_statistics(row[key][region][name] for row in rows)
            for name in ("dice", "iou", "precision", "recall", "hd95_mm")
        }
        worst = sorted(rows, key=lambda r: r[key][region]["dice"] or 0.0)[:5]
        stats["worst_five"] = [  # type: ignore[assignment]
            {"patient": r["patient"], "dice": r[key][region]["dice"]} for r in worst
        ]
        out[region] = stats
    return out


#: Postprocessing grid of --choose-postprocessing (mL): whole-tumour components smaller than
#: the first are dropped; enhancing tumour smaller than the second becomes necrosis.
MIN_COMPONENT_ML = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
ET_TO_NCR_BELOW_ML = (0.0, 0.25, 0.5, 1.0, 2.0)


def _mean_dice(pred: np.ndarray, ref: np.ndarray, regions: dict[str, tuple[int, ...]]) -> float:
    """Mean over ``regions`` of Dice (BraTS policy: both empty -> 1)."""
    values = []
    for codes in regions.values():
        p, r = np.isin(pred, codes), np.isin(ref, codes)
        total = int(p.sum()) + int(r.sum())
        values.append(1.0 if total == 0 else 2.0 * int((p & r).sum()) / total)
    return float(np.mean(values))


def choose_postprocessing(
    kept: dict[str, Any], rows: list[dict[str, Any]], *, binary: bool
) -> dict[str, Any]:
    """Grid-search the postprocessing on CV predictions; return the choice and its estimates.

    The score of a setting is the mean over patients of the mean Dice over regions (WT, TC,
    ET; or the tumour). ``chosen`` is the best setting on all patients (what ships); it was
    selected on the same patients, so its score is optimistic. ``nested`` is unbiased: each
    fold is scored with the setting chosen on the other folds. Ties go to the milder setting.
    """
    from gliomaseg.evaluate.metrics import BINARY_REGIONS
    from gliomaseg.segment.postprocess import PostprocessConfig, postprocess

    regions = BINARY_REGIONS if binary else {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    grid = [
        PostprocessConfig(m, e)
        for m in MIN_COMPONENT_ML
        for e in ((0.0,) if binary else ET_TO_NCR_BELOW_ML)
    ]
    fold_of = {r["case_id"]: r["fold"] for r in rows}
    score: dict[int, dict[str, float]] = {}
    for k, config in enumerate(grid):
        score[k] = {}
        for case_id, (pred, ref, voxel_ml) in kept.items():
            processed, _ = postprocess(pred, voxel_ml=voxel_ml, config=config)
            score[k][case_id] = _mean_dice(processed, ref, regions)

    def best(cases: list[str]) -> int:  # first (mildest) of the best
        means = [float(np.mean([score[k][c] for c in cases])) for k in range(len(grid))]
        return int(np.argmax(np.round(means, 6)))

    cases = list(kept)
    chosen = best(cases)
    nested: dict[str, float] = {}
    per_fold = {}
    for fold in sorted(set(fold_of.values())):
        inside = [c for c in cases if fold_of[c] == fold]
        k = best([c for c in cases if fold_of[c] != fold])
        per_fold[str(fold)] = grid[k].to_dict()
        nested.update({c: score[k][c] for c in inside})
    return {
        "score": "mean over patients of the mean Dice over regions",
        "grid": [
            {**config.to_dict(), "mean_dice": round(float(np.mean(list(score[k].values()))), 4)}
            for k, config in enumerate(grid)
        ],
        "chosen": grid[chosen].to_dict(),
        "chosen_mean_dice_on_the_same_patients": round(
            float(np.mean(list(score[chosen].values()))), 4
        ),
        "nested": {
            "chosen_without_each_fold": per_fold,
            "mean_dice": round(float(np.mean(list(nested.values()))), 4),
        },
        "none_mean_dice": round(float(np.mean(list(score[0].values()))), 4),
    }


def rescore(rows: list[dict[str, Any]], kept: dict[str, Any], post: Any, *, binary: bool) -> None:
    """Recompute each row's postprocessed ``metrics`` with ``post`` (in place)."""
    from gliomaseg.evaluate.metrics import BINARY_REGIONS, region_metrics
    from gliomaseg.segment.postprocess import postprocess

    for row in rows:
        pred, ref, voxel_ml = kept[row["case_id"]]
        kwargs: dict[str, Any] = {"spacing": row["spacing"], "labels": () if binary else (1, 2, 3)}
        if binary:
            kwargs["regions"] = BINARY_REGIONS
        processed, _ = postprocess(pred, voxel_ml=voxel_ml, config=post)
        row["metrics"] = _rounded(region_metrics(processed, ref, **kwargs))


def agreement(model: str, root: Path, *, tta: bool, post: Any, bf16: bool) -> list[dict[str, Any]]:
    """The full ensemble against isen-20 on every case under ``root`` that has its output."""
    import nibabel as nib

    from gliomaseg.core.labels import get_scheme
    from gliomaseg.evaluate.metrics import region_metrics
    from gliomaseg.io.layouts import read_case
    from gliomaseg.segment.config import SegmentConfig
    from gliomaseg.segment.models import Segmenter
    from gliomaseg.segment.postprocess import postprocess
    from gliomaseg.segment.workflow import predict_case

    seg = Segmenter.load(model, device="cpu")
    rows = []
    for isen in sorted(root.glob("*/brats2020_algorithms/isen-20.nii.gz")):
        case_dir = isen.parent.parent
        case = read_case(case_dir / "images")
        start = time.perf_counter()
        # The precision of the folds (bf16 only with --amp), as segment runs it.
        label, _ = predict_case(case, seg, SegmentConfig(tta=tta, fp32=not bf16))
        label, _ = postprocess(label, voxel_ml=case.voxel_volume_ml, config=post)
        seconds = time.perf_counter() - start
        ours = case.to_source(label)
        image = nib.load(isen)
        theirs = get_scheme("brats2020").encode(np.asarray(image.dataobj), source=str(isen))
        metrics = region_metrics(ours, theirs, spacing=image.header.get_zooms()[:3])
        rows.append(
            {
                "case_id": case.case_id,
                "reference": "isen-20 (BraTS 2020 winner, automatic)",
                "seconds": round(seconds, 2),
                "metrics": _rounded(metrics),
            }
        )
        print(f"  {case.case_id} vs isen-20: {_brief(rows[-1]['metrics'])}", file=sys.stderr)
    return rows


def update_card(card_path: Path, report: dict[str, Any], choice: dict[str, Any] | None) -> None:
    """Store the cross-validation results of ``report`` in the model card ``card_path``."""
    from gliomaseg.io.atomic import write_json_atomic
    from gliomaseg.train.bundle import read_card

    results = report["results"]
    card = read_card(card_path)
    card["cross_validation"] = {
        "measured": report["date"],
        "machine": report["machine"],
        "command": "python bench/accuracy.py " + " ".join(sys.argv[1:]),
        "n_patients": results["n_patients"],
        "postprocessing": results["postprocessing"],
        "postprocessing_choice": choice,
        "per_patient_3d": results["cross_validation"],
        "per_patient_3d_without_postprocessing": results["cross_validation_without_postprocessing"],
        "agreement_with_isen20": [
            {
                "case_id": a["case_id"],
                **{r: a["metrics"][r]["dice"] for r in ("WT", "TC", "ET")},
            }
            for a in results["agreement_with_isen20"]
        ],
    }
    card["table_row"] = _table_row(report, card_path)
    write_json_atomic(card_path, card)


def _table_row(report: dict[str, Any], card_path: Path) -> dict[str, Any]:
    """The README's table-of-runs row of this report (``bench/runs_table.py``), as its fields
    and as markdown, for the model card."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import runs_table
    finally:
        sys.path.pop(0)
    row = runs_table.row(report, card_path.stem, card_path)
    return {**row, "markdown": runs_table.markdown([row])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.unseen and (args.update_card or args.choose_postprocessing):
        print(
            "--unseen is not cross-validation: no --update-card or --choose-postprocessing",
            file=sys.stderr,
        )
        return 2
    if args.with_models and (args.update_card or args.unseen):
        print("--with scores an ensemble of bundles: no --update-card or --unseen", file=sys.stderr)
        return 2
    import torch

    from gliomaseg.core.errors import InputError
    from gliomaseg.train.runs import use_bf16

    torch.set_num_threads(args.threads)
    # Everything predicts under one precision: bf16 autocast only where native. A `with`
    # block, never a bare __enter__: a context left open keeps autocast's weight cache alive
    # and corrupts any training that follows in the same process (the test suite's).
    bf16 = use_bf16(torch.device("cpu"), args.amp)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return _score(args, bf16)
    except (InputError, FileNotFoundError) as err:  # a missing or corrupt model, cache or case
        print(err, file=sys.stderr)
        return 2


def _score(args: argparse.Namespace, bf16: bool) -> int:
    """:func:`main` after its checks, under the chosen precision."""
    import torch

    # One linear run (load, predict every fold, choose postprocessing, score, report): long, not deep.
    from gliomaseg.core.machine import report_header
    from gliomaseg.models.checkpoint import load_checkpoint
    from gliomaseg.segment.models import resolve_model

    load_before = os.getloadavg()
    path = resolve_model(args.model)
    payload = load_checkpoint(path)
    folds = payload.get("folds")
    if not folds:
        print(f"{path}: no fold list; bundle the runs with 'gliomaseg bundle'", file=sys.stderr)
        return 2
    nets = members(payload)
    partners, error = fold_partners(payload, args.with_models)
    if error:
        print(error, file=sys.stderr)
        return 2
    if partners:
        from gliomaseg.models.ensemble import MeanEnsemble

        nets = [MeanEnsemble([net, *(p[i] for p in partners)]) for i, net in enumerate(nets)]
    from gliomaseg.segment.postprocess import PostprocessConfig

    post = PostprocessConfig(**payload.get("postprocess", {}))
    if args.min_component_ml is not None:
        post = PostprocessConfig(args.min_component_ml, post.et_to_ncr_below_ml)
    rows: list[dict[str, Any]] = []
    kept: dict[str, Any] | None = {} if args.choose_postprocessing else None
    start = time.perf_counter()
    with torch.inference_mode():
        if args.unseen:
            from gliomaseg.io.cache import load_index
            from gliomaseg.models.checkpoint import load_model

            patients = unseen_patients(folds, load_index(args.cache))
            print(f"{len(patients)} patients no member trained on", file=sys.stderr)
            if not patients:
                print(f"{args.cache}: every patient was in the model's training", file=sys.stderr)
                return 2
            ensemble, _ = load_model(path)
            rows = score_fold(
                ensemble, payload, args.cache, patients, tta=args.tta, max_cases=None, post=post
            )
            folds = []  # no cross-validation: the loop below has nothing to do
        for member, fold in enumerate(folds):
            print(f"fold {fold['fold']} (member {member})", file=sys.stderr)
            fold_rows = score_fold(
                nets[member],
                payload,
                args.cache,
                set(fold["val_patients"]),
                tta=args.tta,
                max_cases=args.max_cases,
                post=post,
                keep=kept,
            )
            rows += [{**r, "fold": fold["fold"]} for r in fold_rows]
        choice = None
        if kept is not None:
            from gliomaseg.core.targets import TargetSpec

            target = TargetSpec.from_dict(payload["target"])
            binary = sum(1 for g in target.groups if 0 not in g) == 1
            choice = choose_postprocessing(kept, rows, binary=binary)
            post = PostprocessConfig(**choice["chosen"])
            rescore(rows, kept, post, binary=binary)
            print(f"postprocessing chosen: {choice['chosen']}", file=sys.stderr)
        agree = (
            agreement(args.model, args.agreement, tta=args.tta, post=post, bf16=bf16)
            if args.agreement
            else []
        )
    results = {
        "model": str(path),
        "n_patients": len({r["patient"] for r in rows}),
        "postprocessing": post.to_dict(),
        "postprocessing_choice": choice,
        "cross_validation": summarise(rows),
        "cross_validation_without_postprocessing": summarise(
            rows, "metrics_without_postprocessing"
        ),
        "per_case": rows,
        "agreement_with_isen20": agree,
        "seconds": round(time.perf_counter() - start, 1),
    }
    report = {
        **report_header(
            "accuracy", note=args.note, threads=args.threads, device="cpu", load_start=load_before
        ),
        "settings": {
            "cache": str(args.cache),
            "tta": args.tta,
            "bf16_autocast": bf16,
            "max_cases": args.max_cases,
            "min_component_ml": args.min_component_ml,
            "unseen": args.unseen,
            "with": [str(p) for p in args.with_models],
        },
        "results": results,
    }
    print(json.dumps(report, indent=1))
    if args.update_card:
        update_card(path.with_suffix(".json"), report, choice)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
