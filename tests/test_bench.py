"""Smoke tests of the benchmark scripts: tiny settings, valid JSON, no timing asserted.

The scripts run in this process (``--in-process``) so the test pays the torch/MONAI imports
once; their subprocess mode re-imports both per device or pipeline and is run by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import load_bench
from gliomaseg.io.writers import write_layout
from gliomaseg.prepare.workflow import PrepareConfig, prepare_dataset
from gliomaseg.synthetic.phantoms import make_case

TINY_MODEL = ["--features", "4,8", "--device", "cpu", "--in-process"]


def _run(module: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    module.main(argv)
    report: dict = json.loads(capsys.readouterr().out)
    for key in ("date", "machine", "python", "torch", "threads", "device", "results"):
        assert key in report, key
    assert len(report["load_average_1_5_15"]["start"]) == 3
    return report


@pytest.fixture(scope="module")
def raw_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny BraTS 2020-layout phantom cases (32 x 32 x 12, flipped x, 2 mm slices)."""
    root = tmp_path_factory.mktemp("bench_raw")
    for i in range(2):
        case = make_case(
            rng=np.random.default_rng(50 + i),
            case_id=f"Bench_{i:03d}",
            template="phantom",
            shape=(32, 32, 12),
            tumour_radius_mm=8.0,
            spacing=(1.0, 1.0, 2.0),
            flip_axis=0,
        )
        write_layout(case, root, layout="brats2020")
    return root


def test_train_throughput_random_batches(capsys):
    bench = load_bench("train_throughput")
    argv = [*TINY_MODEL, "--size", "32", "--batch-size", "2", "--steps", "2", "--warmup", "1"]
    report = _run(bench, argv, capsys)
    (result,) = report["results"]
    assert result["device"] == "cpu" and result["mode"] == "random"
    assert result["slices_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert np.isfinite(result["last_loss"])


def test_train_throughput_from_a_prepared_cache(raw_cases, tmp_path, capsys):
    prepare_dataset(raw_cases, tmp_path / "cache", config=PrepareConfig(folds=0, margin=0))
    bench = load_bench("train_throughput")
    argv = [*TINY_MODEL, "--cache", str(tmp_path / "cache"), "--size", "32"]
    report = _run(bench, [*argv, "--batch-size", "2", "--steps", "2", "--warmup", "1"], capsys)
    (result,) = report["results"]
    assert result["mode"] == "cache"
    data, step = result["data_seconds_per_step"], result["seconds_per_step"]
    assert 0 <= data["min"] <= data["median"] <= data["max"]
    # loading is part of the step it feeds, step by step, so also in order statistics
    assert data["median"] <= step["median"] + 1e-3 and data["max"] <= step["max"] + 1e-3


def test_segment_speed_runs_both_pipelines(raw_cases, capsys):
    bench = load_bench("segment_speed")
    case = raw_cases / "Bench_000"
    argv = [*TINY_MODEL, "--case", str(case), "--repeats", "2", "--profile", "3"]
    report = _run(bench, argv, capsys)
    (row,) = report["results"]
    for pipeline in ("gliomaseg", "monai"):
        timing = row[pipeline]["seconds_per_case"]
        assert len(timing["all"]) == 2 and 0 < timing["min"] <= timing["median"]
    assert row["time_ratio_gliomaseg_to_monai"] > 0
    assert len(row["gliomaseg"]["profile"]["by_cumulative"]) == 3
    assert "untrained" in report["model"]["weights"]


def test_segment_speed_reference_label_lut_follows_brats_regions():
    from gliomaseg.core.targets import TARGETS

    lut = load_bench("segment_speed")._label_lut(TARGETS["regions"])
    # bit 0 WT, bit 1 TC, bit 2 ET -> BraTS 2020 file codes
    assert lut[0b000] == 0 and lut[0b001] == 2 and lut[0b011] == 1 and lut[0b111] == 4


def test_segment_speed_cold_cli_times_fresh_processes(raw_cases, tmp_path):
    """The cold figure: ``gliomaseg segment`` in fresh processes, with a bundled model name."""
    bench = load_bench("segment_speed")
    args = bench.parse_args(["--case", str(raw_cases / "Bench_000"), "--model", "brats"])
    assert args.model.name == "brats.pt" and args.model.is_file()
    args.out, args.cold_runs = tmp_path, 2
    cold = bench.cold_cli(args, "cpu")
    assert len(cold["seconds"]["all"]) == 2 and cold["seconds"]["min"] > 0
    assert (tmp_path / "cli_cpu_1" / "Bench_000_seg.nii.gz").is_file()
    warm = {"seconds_per_case": {"median": 1.0, "min": 1.0}, "peak_rss_mb": 1.0}
    results = [
        {"pipeline": "gliomaseg", "device": "cpu", **warm},
        {"pipeline": "monai", "device": "cpu", **warm, "cold_start_to_first_case_seconds": 2.0},
    ]
    args.batch_root, args.batch_cases = raw_cases, 2
    batch = bench.batch_cli(args, "cpu")
    assert batch["cases"] == ["Bench_000", "Bench_001"] and batch["seconds_per_case"] > 0
    assert (tmp_path / "batch_cpu" / "Bench_001_summary.json").is_file()
    assert all((tmp_path / "batch_in_cpu" / c).is_symlink() for c in batch["cases"])
    row = bench.compare(results, "cpu", cold, batch)
    assert row["cold_cli_to_warm_gliomaseg"] == round(cold["seconds"]["min"], 3)
    assert "met_cold_cli_median" in row["targets"] and "met_batch" in row["targets"]


def _flag_record(fold: int, dice: list[float], boundary: list[float]) -> dict:
    n = len(dice)
    return {
        "case_id": f"c{fold}",
        "fold": fold,
        "variants": 1,
        "dice": dice,
        "pred_pixels": [0 if d == 1.0 else 10 for d in dice],
        "ref_pixels": [0 if d == 1.0 else 10 for d in dice],
        "components": {"boundary": boundary, "edge": [0.0] * n},
        "max_probability": [0.95 if d < 1.0 else 0.01 for d in dice],
        "confidence": 1.0 - float(np.mean(boundary)),
        "case_wt_dice": float(np.mean(dice)),
    }


def test_flags_metrics_on_hand_made_records():
    """bench/flags.py's figures from per-patient records, no prediction: a score that ranks
    the two bad slices of each case first has AUROC 1, flagged slices have the lower Dice,
    empty slices (Dice 1 by the BraTS rule, both masks empty) are left out of the Dice
    figures, and the case confidence follows case Dice."""
    bench = load_bench("flags")
    records = [
        _flag_record(k, [1.0, 0.9, 0.2 + k / 10, 0.95, 0.3, 1.0], [0.0, 0.1, 0.6, 0.05, 0.5, 0.0])
        for k in range(3)
    ]
    records[2]["components"]["boundary"][2] = 0.9  # the worst case is the least confident
    records[2]["confidence"], records[2]["case_wt_dice"] = 0.3, 0.5
    out = bench.evaluate(records)
    slices = out["slice_level"]
    assert slices["tumour_slices"] == 12 and slices["error_slices"] == 6
    assert slices["auroc_dice_below_0.7"]["boundary"] == 1.0
    kinds = slices["error_kinds"]
    assert {k: v["slices"] for k, v in kinds.items()} == {
        "correct": 6, "missed": 0, "false_positive": 0, "partial": 6
    }  # fmt: skip
    assert kinds["partial"]["share_at_or_above"]["0.3"] == 1.0
    assert kinds["correct"]["share_at_or_above"]["0.3"] == 0.0
    missed = {**records[0], "pred_pixels": [0, 10, 0, 10, 10, 0]}  # slice 2: nothing predicted
    lost = bench.error_kinds([missed], [np.asarray(missed["components"]["boundary"])], (0.3,))
    assert lost["missed"]["slices"] == 1 and lost["missed"]["score_median"] == 0.6
    assert lost["missed"]["share_at_or_above"] == {"0.3": 1.0}
    table = bench.flag_table(
        records,
        [np.asarray(r["components"]["boundary"]) for r in records],
        threshold=0.4,
        max_flags=10,
    )
    assert table["precision"] == 1.0 and table["recall"] == 1.0
    assert table["flagged_tumour_slices"]["n"] == 6 and table["flagged_empty_slices"] == 0
    assert table["flagged_tumour_slices"]["mean"] < table["unflagged_tumour_slices"]["mean"]
    bounded = bench.flag_table(
        records,
        [np.asarray(r["components"]["boundary"]) for r in records],
        threshold=0.0,
        max_flags=1,
    )
    assert bounded["flags_per_case"]["mean"] == 1.0
    assert out["old_rule"]["flagged_tumour_slices"]["n"] == 12  # every tumour slice
    assert out["nested"]["chosen_without_each_fold"].keys() == {"0", "1", "2"}
    assert out["case_level"]["spearman_confidence_vs_wt_dice"] > 0


def _report(dices: dict[str, dict[str, float]], key: str) -> dict:
    """A minimal bench/accuracy.py report: per-case Dice under ``key``, summary regions."""
    regions = list(next(iter(dices.values())))
    rows = [{"case_id": c, key: {r: {"dice": d} for r, d in v.items()}} for c, v in dices.items()]
    return {"results": {"cross_validation": dict.fromkeys(regions), "per_case": rows}}


def test_compare_runs_pairs_patients_and_bootstraps_reproducibly(tmp_path, capsys):
    module = load_bench("compare_runs")
    key = "metrics_without_postprocessing"
    first = {f"p{i}": {"WT": 0.8, "TC": 0.6 + 0.01 * i} for i in range(10)}
    second = {f"p{i}": {"WT": 0.8 + (0.1 if i < 7 else -0.1), "TC": 0.6} for i in range(10)}
    paths = []
    for name, dices in (("a", first), ("b", second)):
        paths.append(tmp_path / f"{name}.json")
        report = _report(dices, key)
        report["results"]["per_case"][0][key]["label1"] = {"dice": 0.0}  # not a summary region
        paths[-1].write_text(json.dumps(report))
    assert module.main([str(p) for p in paths]) == 0
    out = json.loads(capsys.readouterr().out)["second_minus_first"]
    assert set(out) == {"WT", "TC", "mean"}
    assert out["WT"]["mean_difference"] == pytest.approx(0.04)
    assert (out["WT"]["second_better"], out["WT"]["second_worse"]) == (7, 3)
    assert out["TC"]["mean_difference"] == pytest.approx(-0.045)
    assert out["mean"]["mean_difference"] == pytest.approx((0.04 - 0.045) / 2)
    low, high = out["WT"]["bootstrap_95"]
    assert -0.1 <= low < 0.04 < high <= 0.1
    assert module.main([str(p) for p in paths]) == 0  # fixed seed: the same interval again
    assert json.loads(capsys.readouterr().out)["second_minus_first"]["WT"]["bootstrap_95"] == [
        low,
        high,
    ]
    # Reports of different patients are refused with one line, exit 2.
    del second["p9"]
    paths[1].write_text(json.dumps(_report(second, key)))
    assert module.main([str(p) for p in paths]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different patients" in err
    for path in paths:  # two empty reports: one line too, not a traceback
        path.write_text(json.dumps({"results": {"cross_validation": {}, "per_case": []}}))
    assert module.main([str(p) for p in paths]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no patients" in err


def test_subgroups_split_a_report_by_grade_and_by_source(tmp_path, capsys):
    module = load_bench("subgroups")
    rows = []
    for case, dice in (
        ("Brats18_TCIA10_628_1", 0.2),  # LGG through --ids (BraTS20_Training_309)
        ("BraTS20_Training_300", 0.4),  # LGG by its own id
        ("BraTS20_Training_010", 0.9),  # HGG by its own id
        ("Brats18_CBICA_AAB_1", 0.8),  # HGG through --ids
        ("BraTS2021_00002", 0.7),  # no grade in its name
    ):
        metrics = {"TC": {"dice": dice, "hd95_mm": 10 * dice}}
        raw = {"TC": {"dice": dice - 0.1, "hd95_mm": 1.0}}
        rows.append({"case_id": case, "metrics": metrics, "metrics_without_postprocessing": raw})
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"results": {"cross_validation": {"TC": {}}, "per_case": rows}}))
    ids = tmp_path / "cases.json"
    ids.write_text(
        json.dumps(
            {
                "cases": {
                    "Brats18_TCIA10_628_1": {"brats2020_id": "BraTS20_Training_309"},
                    "Brats18_CBICA_AAB_1": {"brats2020_id": "BraTS20_Training_002"},
                }
            }
        )
    )
    assert module.main([str(report), "--by", "grade", "--ids", str(ids)]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert {g: v["n"] for g, v in groups.items()} == {"HGG": 2, "LGG": 2, "unknown": 1}
    lgg = groups["LGG"]
    assert lgg["postprocessed"]["TC"]["dice_mean"] == pytest.approx(0.3)
    assert lgg["postprocessed"]["TC"]["dice_worst"] == pytest.approx(0.2)
    assert lgg["postprocessed"]["TC"]["hd95_mm_mean"] == pytest.approx(3.0)
    assert lgg["without_postprocessing"]["TC"]["dice_mean"] == pytest.approx(0.2)
    assert module.main([str(report)]) == 0  # by source: the folds' strata
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert {g: v["n"] for g, v in groups.items()} == {"TCIA": 1, "CBICA": 1, "2021": 1, "other": 2}
    report.write_text("{")  # a broken report: one line, exit 2
    assert module.main([str(report)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(report) in err
