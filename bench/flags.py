"""Do the review flags point at errors? Validated on cross-validation predictions.

Each held-out patient of a fold is predicted by that fold's model (``RUN/checkpoints/
CHECKPOINT``, trained without it) exactly as ``bench/accuracy.py`` predicts (its
``predict_cached``: whole slices, the model's postprocessing), with test-time flips unless
``--no-tta``. A single fold model has no ensemble members, so the ``disagreement``
component is the disagreement of the four flips (a shipped ensemble adds its members;
none of the other fold models is unseen by a patient, so the shipped ensemble cannot be
validated honestly this way). Per axial slice (cropped brain grid) it records the whole
tumour (WT) Dice against the manual label and the uncertainty components of
:mod:`gliomaseg.segment.uncertainty`, and reports:

* slice level, over tumour-bearing slices (label or prediction non-empty; slices where both
  are empty are left out of every Dice figure and counted separately when flagged): the
  AUROC of each score for "slice Dice < 0.7"; mean and median slice Dice of flagged vs
  unflagged slices under the shipped rule (score >= threshold, at most ``MAX_FLAGS`` per
  case); flags per case; the share of flags on error slices (precision) and of error slices
  flagged (recall), for a grid of thresholds, with the threshold chosen on the other folds
  for each fold (nested) beside the one chosen on all;
* case level: Spearman's rho of the case confidence with case WT Dice, and the AUROC of
  (1 - confidence) for "case WT Dice < 0.8".

Per-patient results are kept in ``--work`` (default ``~/.cache/gliomaseg-flags``), keyed by
run, checkpoint and settings, so a rerun with more folds only predicts the new patients.
Prints one JSON object; writes nothing into the repository::

    nice -n 10 .venv/bin/python bench/flags.py --runs RUNS/fold0 RUNS/fold1 RUNS/fold2 \\
        --cache CACHE_BRATS49 > flags.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

#: Slice Dice below which a slice counts as an error worth flagging.
SLICE_ERROR_DICE = 0.7
#: Case WT Dice below which a case counts as poorly segmented.
CASE_ERROR_DICE = 0.8
#: The rule the flags replace: every slice whose maximum tumour probability reaches this.
OLD_THRESHOLD = 0.9
#: Probability floors compared with the shipped one (:data:`gliomaseg.segment.uncertainty.P_FLOOR`).
FLOORS = (0.0, 0.01, 0.05)
#: Edge weights compared (with the max and the mean of the other signals).
EDGE_WEIGHTS = (0.0, 0.1, 0.25)
#: Thresholds tried for the flag rule.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 15))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gliomaseg.cli.main import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("--runs", type=Path, nargs="+", help="fold run folders")
    parser.add_argument("--cache", type=Path, help="prepared cache the runs used")
    parser.add_argument(
        "--cost",
        metavar="MODEL",
        help="instead: time what the flags add to inference with this (bundled) model",
    )
    parser.add_argument("--checkpoint", default="best.pt", help="file in RUN/checkpoints")
    parser.add_argument("--no-tta", action="store_true", help="no flips (no disagreement)")
    parser.add_argument(
        "--amp",
        action="store_true",
        help="predict under bf16 autocast where the CPU has it natively (segment's default there)",
    )
    parser.add_argument("--max-cases", type=int, default=None, help="per fold (smoke tests)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path.home() / ".cache" / "gliomaseg-flags",
        help="per-patient results kept here for resuming (default: %(default)s)",
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="evaluate only the patients already kept in --work (no prediction)",
    )
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    args = parser.parse_args(argv)
    if not args.cost and (not args.runs or args.cache is None):
        parser.error("--runs and --cache are required (or --cost MODEL)")
    return args


def _accuracy() -> ModuleType:
    """``bench/accuracy.py``, whose prediction of cached cases this script reuses."""
    path = Path(__file__).resolve().parent / "accuracy.py"
    spec = importlib.util.spec_from_file_location("bench_accuracy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def patient_record(
    net: Any, payload: dict[str, Any], cache: Path, case_id: str, *, tta: bool
) -> dict[str, Any]:
    """Per-slice WT Dice, areas and uncertainty components of one held-out patient."""
    from gliomaseg.core.targets import TargetSpec
    from gliomaseg.evaluate.metrics import confusion, dice, slice_metrics
    from gliomaseg.models.checkpoint import input_scale
    from gliomaseg.segment.postprocess import PostprocessConfig, postprocess
    from gliomaseg.segment.summary import tumour_probability
    from gliomaseg.segment.uncertainty import Disagreement, case_confidence, components

    target = TargetSpec.from_dict(payload["target"])
    observer = Disagreement(target)
    start = time.perf_counter()
    pred, ref, probs, spacing = _accuracy().predict_cached(
        net, payload, cache, case_id, tta=tta, observe=observer
    )
    seconds = time.perf_counter() - start
    voxel_ml = float(np.prod(spacing)) / 1000.0
    post = PostprocessConfig(**payload.get("postprocess", {}))
    pred, _ = postprocess(pred, voxel_ml=voxel_ml, config=post)
    mask, truth = pred > 0, ref > 0
    tumour_p = tumour_probability(probs, target)
    scale = input_scale(payload)
    pixel_mm2 = spacing[0] * spacing[1]
    extra = time.perf_counter()
    parts = components(
        tumour_p, mask, pixel_mm2=pixel_mm2, disagreement=observer, input_scale=scale
    )
    confidence = case_confidence(
        tumour_p, mask, pixel_mm2=pixel_mm2, disagreement=observer, input_scale=scale
    )
    extra = time.perf_counter() - extra
    for floor in FLOORS:  # what the probability floor costs or buys
        parts[f"boundary_floor{floor:g}"] = components(
            tumour_p, mask, pixel_mm2=pixel_mm2, floor=floor
        )["boundary"]
    per_slice = slice_metrics(mask, truth)
    return {
        "case_id": case_id,
        "variants": observer.variants,
        "dice": [round(float(v), 5) for v in per_slice["dice"]],
        "pred_pixels": [int(v) for v in per_slice["tp"] + per_slice["fp"]],
        "ref_pixels": [int(v) for v in per_slice["tp"] + per_slice["fn"]],
        "components": {k: [round(float(x), 5) for x in v] for k, v in parts.items()},
        "max_probability": [round(float(x), 4) for x in tumour_p.max(axis=(0, 1))],
        "confidence": round(confidence, 5),
        "case_wt_dice": round(dice(confusion(mask, truth)), 5),
        "seconds_predict": round(seconds, 2),
        "seconds_uncertainty": round(extra, 3),
    }


def _key(run: Path, checkpoint: Path, *, tta: bool, bf16: bool = False) -> str:
    """Run, checkpoint version, settings and the component constants of the records."""
    from gliomaseg.segment.uncertainty import P_FLOOR, SMOOTH_MM2

    stat = checkpoint.stat()
    text = (
        f"{run.resolve()}|{checkpoint.name}|{stat.st_size}|{stat.st_mtime_ns}|tta={tta}"
        f"|smooth={SMOOTH_MM2}|floor={P_FLOOR}"
        + ("|bf16" if bf16 else "")  # float32 records keep their old key
    )
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def predict_runs(
    args: argparse.Namespace, *, bf16: bool = False
) -> tuple[list[dict[str, Any]], list[int]]:
    """Records of the held-out patients of every run (read from ``--work`` when kept).

    ``bf16``: the caller predicts under bf16 autocast (records are kept per precision).

    Patients are visited round-robin over the runs (the first of each fold, then the
    second...), so a run stopped early leaves every fold about equally covered, and
    ``--cached-only`` evaluates what is kept without predicting.
    """
    from gliomaseg.io.atomic import write_json_atomic
    from gliomaseg.io.cache import load_index
    from gliomaseg.models.checkpoint import load_checkpoint

    accuracy = _accuracy()
    index = load_index(args.cache)
    labelled = {c["patient"]: c["case_id"] for c in index["cases"] if c["labelled"]}
    plans, folds = [], []
    for run in args.runs:
        path = run / "checkpoints" / args.checkpoint
        payload = load_checkpoint(path)
        fold = int(payload["train_config"]["fold"])
        folds.append(fold)
        keep = args.work / f"{run.name}-{_key(run, path, tta=not args.no_tta, bf16=bf16)}"
        patients = [p for p in sorted(index["folds"][fold]["val"]) if p in labelled]
        plans.append(
            {
                "payload": payload,
                "fold": fold,
                "keep": keep,
                "net": None,
                "cases": [labelled[p] for p in patients[: args.max_cases]],
            }
        )
        print(f"{run} (fold {fold}): {len(plans[-1]['cases'])} patients", file=sys.stderr)
    records = []
    for i in range(max((len(plan["cases"]) for plan in plans), default=0)):
        for plan in plans:
            if i >= len(plan["cases"]):
                continue
            case_id = plan["cases"][i]
            saved = plan["keep"] / f"{case_id}.json"
            if saved.exists():
                record = json.loads(saved.read_text())
            elif args.cached_only:
                continue
            else:
                if plan["net"] is None:
                    plan["net"] = accuracy.members(plan["payload"])[0]
                record = patient_record(
                    plan["net"], plan["payload"], args.cache, case_id, tta=not args.no_tta
                )
                plan["keep"].mkdir(parents=True, exist_ok=True)
                write_json_atomic(saved, record)
            print(
                f"  fold {plan['fold']} {case_id}: WT Dice {record['case_wt_dice']}",
                file=sys.stderr,
            )
            records.append({**record, "fold": plan["fold"]})
    return records, folds


def flag_mask(score: np.ndarray, *, threshold: float, max_flags: int) -> np.ndarray:
    """(Z,) bool: the slices :func:`gliomaseg.segment.uncertainty.rank_flags` would flag."""
    from gliomaseg.segment.uncertainty import rank_flags

    out = np.zeros(score.shape, dtype=bool)
    out[rank_flags(score, [], threshold=threshold, max_flags=max_flags)] = True
    return out


def flag_table(
    records: list[dict[str, Any]], scores: list[np.ndarray], *, threshold: float, max_flags: int
) -> dict[str, Any]:
    """Slice Dice of flagged vs unflagged tumour-bearing slices under one threshold."""
    flagged, unflagged, empty_flagged, per_case = [], [], 0, []
    errors_flagged = errors = 0
    for record, score in zip(records, scores, strict=True):
        dice = np.asarray(record["dice"])
        tumour = (np.asarray(record["pred_pixels"]) > 0) | (np.asarray(record["ref_pixels"]) > 0)
        flags = flag_mask(score, threshold=threshold, max_flags=max_flags)
        per_case.append(int(flags.sum()))
        flagged += dice[flags & tumour].tolist()
        unflagged += dice[~flags & tumour].tolist()
        empty_flagged += int((flags & ~tumour).sum())
        error = tumour & (dice < SLICE_ERROR_DICE)
        errors += int(error.sum())
        errors_flagged += int((error & flags).sum())
    n_flags = sum(per_case)
    return {
        "threshold": threshold,
        "flags_per_case": _stats(per_case),
        "flagged_tumour_slices": _stats(flagged),
        "unflagged_tumour_slices": _stats(unflagged),
        "flagged_empty_slices": empty_flagged,
        "precision": round(errors_flagged / n_flags, 4) if n_flags else None,
        "recall": round(errors_flagged / errors, 4) if errors else None,
    }


def _stats(values: list[float] | list[int]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    if not arr.size:
        return {"n": 0, "mean": None, "median": None}
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 4),
        "median": round(float(np.median(arr)), 4),
    }


def error_kinds(
    records: list[dict[str, Any]], scores: list[np.ndarray], thresholds: tuple[float, ...]
) -> dict[str, Any]:
    """Tumour slices by kind, with the scores each kind gets: ``correct`` (Dice >= 0.7) and,
    below it, ``missed`` (no predicted tumour), ``false_positive`` (none in the label) and
    ``partial`` (both present). A missed slice the model is sure of scores ~0: no rule on
    the score can flag it."""
    kinds: dict[str, list[float]] = {
        "correct": [],
        "missed": [],
        "false_positive": [],
        "partial": [],
    }
    for record, score in zip(records, scores, strict=True):
        cells = zip(record["dice"], record["pred_pixels"], record["ref_pixels"], score, strict=True)
        for dice, pred, ref, value in cells:
            if pred == 0 and ref == 0:
                continue  # no tumour in either: not a tumour slice
            if dice >= SLICE_ERROR_DICE:
                kind = "correct"
            else:
                kind = "missed" if pred == 0 else "false_positive" if ref == 0 else "partial"
            kinds[kind].append(float(value))
    return {
        kind: {
            "slices": len(values),
            "score_median": round(float(np.median(values)), 4) if values else None,
            "share_at_or_above": {
                f"{t:g}": round(float(np.mean(np.asarray(values) >= t)), 3) if values else None
                for t in thresholds
            },
        }
        for kind, values in kinds.items()
    }


def _f1(table: dict[str, Any]) -> float:
    p, r = table["precision"] or 0.0, table["recall"] or 0.0
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def evaluate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of the report from the per-patient records (no prediction)."""
    # Long: one section per figure of the report, each a few lines and independent.
    from scipy.stats import spearmanr

    from gliomaseg.evaluate.metrics import auroc
    from gliomaseg.segment.uncertainty import DEFAULT_THRESHOLD, MAX_FLAGS, slice_scores

    scores = [slice_scores(_parts(r))[0] for r in records]
    tumour_by_case = [
        (np.asarray(r["pred_pixels"]) > 0) | (np.asarray(r["ref_pixels"]) > 0) for r in records
    ]
    tumour = np.concatenate(tumour_by_case)
    dice = np.concatenate([np.asarray(r["dice"]) for r in records])[tumour]
    error = dice < SLICE_ERROR_DICE
    candidates = {"score": np.concatenate(scores)[tumour]}
    for combine in ("max", "mean"):
        for weight in EDGE_WEIGHTS:
            alt = [slice_scores(_parts(r), combine=combine, edge_weight=weight)[0] for r in records]
            candidates[f"{combine}_edge{weight:g}"] = np.concatenate(alt)[tumour]
    for name in sorted({k for r in records for k in r["components"]}):
        candidates[name] = np.concatenate(
            [np.asarray(r["components"].get(name, [0.0] * len(r["dice"]))) for r in records]
        )[tumour]
    empty_high = {
        name: int(
            sum(
                int(((np.asarray(r["components"][name]) >= DEFAULT_THRESHOLD) & ~t).sum())
                for r, t in zip(records, tumour_by_case, strict=True)
            )
        )
        for name in sorted({k for r in records for k in r["components"] if "boundary" in k})
    }
    slice_level = {
        "slices": int(tumour.size),
        "tumour_slices": int(tumour.sum()),
        "error_slices": int(error.sum()),
        "auroc_dice_below_0.7": {k: round(auroc(v, error), 4) for k, v in candidates.items()},
        "empty_slices_at_or_above_threshold": empty_high,
        "error_kinds": error_kinds(records, scores, (0.1, DEFAULT_THRESHOLD)),
    }
    grid = [flag_table(records, scores, threshold=t, max_flags=MAX_FLAGS) for t in THRESHOLDS]
    peak = [np.asarray(r["max_probability"]) for r in records]
    old_rule = flag_table(records, peak, threshold=OLD_THRESHOLD, max_flags=10**6)
    old_rule["threshold"] = f"max tumour probability >= {OLD_THRESHOLD}, unbounded"
    best = max(grid, key=_f1)
    nested = _nested(records, scores)
    conf = np.asarray([r["confidence"] for r in records])
    case_dice = np.asarray([r["case_wt_dice"] for r in records])
    rho = spearmanr(conf, case_dice)
    return {
        "slice_level": slice_level,
        "shipped_rule": flag_table(
            records, scores, threshold=DEFAULT_THRESHOLD, max_flags=MAX_FLAGS
        ),
        "old_rule": old_rule,
        "thresholds": grid,
        "best_f1_threshold_same_data": best["threshold"],
        "nested": nested,
        "case_level": {
            "n_cases": len(records),
            "spearman_confidence_vs_wt_dice": round(float(rho.statistic), 4),
            "spearman_p": round(float(rho.pvalue), 5),
            "cases_below_0.8": int((case_dice < CASE_ERROR_DICE).sum()),
            "auroc_1_minus_confidence_dice_below_0.8": round(
                auroc(1.0 - conf, case_dice < CASE_ERROR_DICE), 4
            ),
        },
    }


def _parts(record: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v) for k, v in record["components"].items() if not k.startswith("boundary_")
    }


def _nested(records: list[dict[str, Any]], scores: list[np.ndarray]) -> dict[str, Any]:
    """Each fold flagged with the threshold of best F1 on the other folds."""
    from gliomaseg.segment.uncertainty import MAX_FLAGS

    folds = sorted({r["fold"] for r in records})
    if len(folds) < 2:
        return {"note": "needs two folds or more"}
    chosen, flagged_recs, flagged_scores, thresholds = {}, [], [], []
    for fold in folds:
        out = [i for i, r in enumerate(records) if r["fold"] != fold]
        grid = [
            flag_table(
                [records[i] for i in out],
                [scores[i] for i in out],
                threshold=t,
                max_flags=MAX_FLAGS,
            )
            for t in THRESHOLDS
        ]
        t = max(grid, key=_f1)["threshold"]
        chosen[str(fold)] = t
        inside = [i for i, r in enumerate(records) if r["fold"] == fold]
        flagged_recs += [records[i] for i in inside]
        flagged_scores += [scores[i] for i in inside]
        thresholds += [t] * len(inside)
    # score each patient with its own fold's threshold: shift scores so one threshold applies
    shifted = [s - t + 1.0 for s, t in zip(flagged_scores, thresholds, strict=True)]
    table = flag_table(flagged_recs, shifted, threshold=1.0, max_flags=MAX_FLAGS)
    table["threshold"] = "chosen without each fold"
    return {"chosen_without_each_fold": chosen, "table": table}


def cost(model: str, *, repeats: int = 3) -> dict[str, Any]:
    """What the flags add to ``segment``, as fractions of the network's own time.

    In one process (so background load hits both alike): one batch of 32 slices of
    12 x 144 x 176 (a BraTS brain crop, 2.5D) through ``model`` member by member, the
    :class:`~gliomaseg.segment.uncertainty.Disagreement` observer on that batch, and
    :func:`~gliomaseg.segment.uncertainty.review` on a 240 x 240 x 155 volume; medians of
    ``repeats``.
    """
    import statistics

    import torch

    from gliomaseg.models.inference import _forward, probabilities
    from gliomaseg.segment.models import Segmenter
    from gliomaseg.segment.uncertainty import Disagreement, review

    seg = Segmenter.load(model, device="cpu")
    channels = len(seg.modalities) * (2 * seg.context + 1)
    x = torch.randn(32, channels, 144, 176).contiguous(memory_format=torch.channels_last)
    p = np.random.default_rng(0).random((240, 240, 155), dtype=np.float32) ** 8
    names = [str(z) for z in range(155)]
    net, obs, rev = [], [], []
    with torch.inference_mode():
        for _ in range(repeats):
            t = time.perf_counter()
            logits, own = _forward(seg.model, x, split=True)
            probs = probabilities(logits, seg.target)
            net.append(time.perf_counter() - t)
            observer = Disagreement(seg.target)
            t = time.perf_counter()
            observer(0, probs, own)
            obs.append(time.perf_counter() - t)
            t = time.perf_counter()
            review(
                p,
                p > 0.5,
                pixel_mm2=1.0,
                names=names,
                input_index=np.arange(155),
                input_axis=2,
                disagreement=observer,
            )
            rev.append(time.perf_counter() - t)
    n, o, r = (statistics.median(v) for v in (net, obs, rev))
    return {
        "model": model,
        "members": observer.variants,
        "network_batch_of_32_s": round(n, 3),
        "observer_batch_of_32_s": round(o, 3),
        "observer_over_network": round(o / n, 4),
        "review_of_a_volume_s": round(r, 3),
        "review_over_network_of_155_slices": round(r / (n * 155 / 32), 4),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from gliomaseg.core.machine import report_header

    torch.set_num_threads(args.threads)
    if args.cost:
        load_before = os.getloadavg()
        results = cost(args.cost)
        report = {
            **report_header("flags-cost", threads=args.threads, load_start=load_before),
            "results": results,
        }
        print(json.dumps(report, indent=1))
        return 0
    load_before = os.getloadavg()
    start = time.perf_counter()
    from gliomaseg.train.runs import use_bf16

    bf16 = use_bf16(torch.device("cpu"), args.amp)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        records, folds = predict_runs(args, bf16=bf16)
    variants = sorted({r["variants"] for r in records})
    report = {
        **report_header(
            "flags", note=args.note, threads=args.threads, device="cpu", load_start=load_before
        ),
        "settings": {
            "runs": [str(r) for r in args.runs],
            "folds": folds,
            "cache": str(args.cache),
            "checkpoint": args.checkpoint,
            "tta": not args.no_tta,
            "bf16_autocast": bf16,
            "max_cases": args.max_cases,
            "cached_only": args.cached_only,
            "patients_per_fold": {
                str(f): sum(1 for r in records if r["fold"] == f) for f in sorted(set(folds))
            },
            "components_available": sorted(
                {k for r in records for k in r["components"] if not k.startswith("boundary_")}
            ),
            "variants_per_slice": variants,
            "slice_error": f"WT Dice < {SLICE_ERROR_DICE}",
            "case_error": f"WT Dice < {CASE_ERROR_DICE}",
        },
        "results": {
            **(evaluate(records) if records else {}),
            "seconds_uncertainty_mean": round(
                float(np.mean([r["seconds_uncertainty"] for r in records])), 3
            )
            if records
            else None,
            "seconds_predict_mean": round(
                float(np.mean([r["seconds_predict"] for r in records])), 2
            )
            if records
            else None,
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
