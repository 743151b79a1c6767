"""Shipping: weighted extra training data, fold ensembles, model cards, the accuracy bench."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN, load_bench
from gliomaseg.cli.main import main
from gliomaseg.cli.train import card_lines
from gliomaseg.core.errors import InputError
from gliomaseg.core.targets import TARGETS
from gliomaseg.io.cache import load_index
from gliomaseg.io.writers import write_layout
from gliomaseg.models.checkpoint import load_checkpoint, load_model
from gliomaseg.models.ensemble import MeanEnsemble, member_state
from gliomaseg.synthetic.phantoms import make_case
from gliomaseg.train.bundle import _cpu_seconds, _train_seconds, bundle_runs, read_card
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.crossval import train_folds
from gliomaseg.train.datasets import (
    ConcatSlices,
    EpochSampler,
    PreparedCases,
    SliceDataset,
    group_weights,
)
from gliomaseg.train.loop import train

QUICK = {**TINY_TRAIN, "epochs": 1, "steps_per_epoch": 2}


def test_group_weights_give_each_group_its_share():
    w = group_weights([0, 0, 0, 1], [0.75, 0.25])
    np.testing.assert_allclose(w, [0.25, 0.25, 0.25, 0.25])
    w = group_weights([0] * 9 + [1], [0.5, 0.5])
    assert w[:9].sum() == pytest.approx(0.5) and w[9] == pytest.approx(0.5)


@pytest.mark.parametrize("tumour_fraction", [None, 0.5])
def test_sampler_draws_groups_in_the_asked_shares(tumour_fraction):
    # 90 main positions, 10 extra; tumour slices in both groups.
    has_tumour = [i % 3 == 0 for i in range(100)]
    groups = [0] * 90 + [1] * 10
    sampler = EpochSampler(
        has_tumour,
        length=4000,
        seed=3,
        tumour_fraction=tumour_fraction,
        groups=groups,
        group_fractions=[0.8, 0.2],
    )
    picks = np.array([p for p, _ in sampler.keys(0)])
    assert np.mean(picks >= 90) == pytest.approx(0.2, abs=0.03)
    if tumour_fraction:
        assert np.mean([has_tumour[p] for p in picks]) > 0.5
    assert sampler.keys(0) == sampler.keys(0)  # deterministic


def test_sampler_rejects_bad_groups():
    with pytest.raises(ValueError, match="group_fractions"):
        EpochSampler([True, False], length=4, seed=0, groups=[0, 2], group_fractions=[0.5, 0.5])


def test_concatenated_slices_address_each_part(synthetic_cache):
    cases = PreparedCases(synthetic_cache, ["Synth_000", "Synth_001"])
    slices = cases.slices()
    half = len(slices) // 2
    parts = [
        SliceDataset(cases, slices[:half], target=TARGETS["regions"], size=(32, 32)),
        SliceDataset(cases, slices[half:], target=TARGETS["regions"], size=(32, 32)),
    ]
    both = ConcatSlices(parts)
    assert len(both) == len(slices)
    for pos in (0, half - 1, half, len(slices) - 1):
        part, local = (0, pos) if pos < half else (1, pos - half)
        np.testing.assert_array_equal(both[pos]["image"], parts[part][local]["image"])
        np.testing.assert_array_equal(both[(pos, 7)]["label"], parts[part][(local, 7)]["label"])


def test_extra_data_joins_training_only(synthetic_cache, tmp_path):
    config = TrainConfig.from_dict(
        {**QUICK, "extra_data": str(synthetic_cache), "extra_fraction": 0.4}
    )
    state = train(config, synthetic_cache, tmp_path / "run", progress=False)
    assert state.epoch == 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["extra_data"] == str(synthetic_cache) and saved["extra_fraction"] == 0.4
    with pytest.raises(ValueError, match="extra_fraction"):
        TrainConfig.from_dict({**QUICK, "extra_fraction": 1.0})
    missing = TrainConfig.from_dict({**QUICK, "extra_data": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match="nope: no such file or folder"):
        train(missing, synthetic_cache, tmp_path / "run2", progress=False)
    assert not (tmp_path / "run2").exists()


@pytest.fixture(scope="module")
def cv_root(synthetic_cache, tmp_path_factory) -> Path:
    """Five one-epoch fold runs of the tiny config, bundled into ``model.pt``."""
    root = tmp_path_factory.mktemp("cv")
    train_folds(
        TrainConfig.from_dict(QUICK), synthetic_cache, root, description="tiny", progress=False
    )
    return root


def test_train_folds_trains_every_fold_and_bundles_them(cv_root, synthetic_cache):
    index = load_index(synthetic_cache)
    card = read_card(cv_root / "model.json")
    assert [f["fold"] for f in card["folds"]] == list(range(5))
    assert [f["val_patients"] for f in card["folds"]] == [f["val"] for f in index["folds"]]
    for key in ("architecture", "input_channels", "preprocessing", "target", "training_command"):
        assert key in card
    assert card["input_channel_order"] == ["flair", "t1", "t1ce", "t2"]
    payload = load_checkpoint(cv_root / "model.pt")
    assert payload["ensemble"] == 5
    for key, value in payload["state_dict"].items():
        if value.is_floating_point():
            stat = key.endswith(("running_mean", "running_var"))
            assert value.dtype == (torch.float32 if stat else torch.float16), key
    # Rerunning the command finds every fold finished and only re-bundles.
    before = (cv_root / "fold0" / "metrics.csv").read_text()
    train_folds(
        TrainConfig.from_dict(QUICK), synthetic_cache, cv_root, description="tiny", progress=False
    )
    assert (cv_root / "fold0" / "metrics.csv").read_text() == before


def test_bundle_orders_members_by_fold_whatever_the_run_order(cv_root, tmp_path):
    runs = [cv_root / f"fold{k}" for k in range(5)]
    in_order = bundle_runs(runs, tmp_path / "a.pt", description="x")
    reversed_ = bundle_runs(runs[::-1], tmp_path / "b.pt", description="x")
    assert reversed_["folds"] == in_order["folds"]
    assert reversed_["training_seconds"] == in_order["training_seconds"]
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value)


def test_ensemble_output_is_the_mean_of_its_members(cv_root):
    model, _ = load_model(cv_root / "model.pt")
    assert isinstance(model, MeanEnsemble) and len(model.members) == 5
    payload = load_checkpoint(cv_root / "model.pt")
    single, _ = load_model(cv_root / "fold2" / "checkpoints" / "last.pt")
    member = model.members[2]
    for name, value in member_state(payload["state_dict"], 2).items():
        reference = single.state_dict()[name]
        if reference.is_floating_point() and value.dtype == torch.float16:
            reference = reference.half().float()
        torch.testing.assert_close(member.state_dict()[name], reference)
        assert value.dtype in (torch.float16, torch.float32, torch.int64)
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        expected = torch.stack([m(x) for m in model.members]).mean(0)
        torch.testing.assert_close(model(x), expected)


def test_bundle_keeps_statistics_float16_cannot_hold(cv_root, tmp_path):
    # Batch-norm variances of millions are real (the brats-cpu runs): as float16 they are inf.
    import shutil

    run = tmp_path / "fold0"
    shutil.copytree(cv_root / "fold0", run)
    path = run / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("running_var"))
    payload["state_dict"][key] = payload["state_dict"][key] + 4.0e6
    torch.save(payload, path)
    bundle_runs([run], tmp_path / "big.pt", description="x")
    bundled = load_checkpoint(tmp_path / "big.pt")["state_dict"]
    assert bundled[f"members.0.{key}"].dtype == torch.float32
    torch.testing.assert_close(bundled[f"members.0.{key}"], payload["state_dict"][key])


def test_bundle_refuses_runs_of_different_models(cv_root, synthetic_cache, tmp_path):
    other = {**QUICK, "model": {"name": "unet", "features": [4, 8, 16], "norm": "batch"}}
    train(TrainConfig.from_dict(other), synthetic_cache, tmp_path / "other", progress=False)
    with pytest.raises(ValueError, match="model_config differs"):
        bundle_runs([cv_root / "fold0", tmp_path / "other"], tmp_path / "x.pt", description="x")
    assert not (tmp_path / "x.pt").exists()


def test_bundled_ensemble_segments_a_case(cv_root, tmp_path, capsys):
    synth = make_case(
        rng=np.random.default_rng(7),
        case_id="BraTS2021_00042",
        template="phantom",
        shape=(32, 32, 20),
        tumour_radius_mm=8.0,
    )
    folder = write_layout(synth, tmp_path / "in", layout="brats2020")
    out = tmp_path / "out"
    assert main(["segment", str(folder), "-o", str(out), "--model", str(cv_root / "model.pt")]) == 0
    seg = np.asarray(nib.load(out / "BraTS2021_00042_seg.nii.gz").dataobj)
    assert seg.shape == synth.shape
    summary = json.loads((out / "BraTS2021_00042_summary.json").read_text())
    assert summary["voxel_volume_ml"] == pytest.approx(0.002)  # 1 x 1 x 2 mm
    assert summary["volumes_ml"]["WT"] == pytest.approx((seg > 0).sum() * 0.002, abs=1e-4)
    assert summary["volumes_ml"]["ET"] == pytest.approx((seg == 4).sum() * 0.002, abs=1e-4)


def test_inference_members_bound_what_segment_averages_not_what_is_stored(cv_root, tmp_path):
    runs = [cv_root / f"fold{k}" for k in range(5)]
    card = bundle_runs(runs, tmp_path / "m.pt", description="x", inference_members=3)
    assert card["inference_members"] == 3 and "first 3 of 5" in card["ensemble"]
    assert len(card["folds"]) == 5  # the whole cross-validation stays on the card
    payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["ensemble"] == 5 and payload["inference_members"] == 3
    model, meta = load_model(tmp_path / "m.pt")
    assert isinstance(model, MeanEnsemble) and len(model.members) == 3
    assert meta["inference_members"] == 3
    everything, _ = load_model(cv_root / "model.pt")
    for i in range(3):  # the first three, in fold order
        for name, value in model.members[i].state_dict().items():
            torch.testing.assert_close(value, everything.members[i].state_dict()[name])
    with pytest.raises(ValueError, match="between 1 and the 5 runs"):
        bundle_runs(runs, tmp_path / "n.pt", description="x", inference_members=6)
    payload["inference_members"] = 7
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="inference_members 7"):
        load_model(tmp_path / "bad.pt")


def test_a_bundles_flag_threshold_is_what_segment_uses_unless_given_one(cv_root, tmp_path):
    runs = [str(cv_root / f"fold{k}") for k in range(5)]
    out = tmp_path / "m.pt"
    argv = ["bundle", *runs, "-o", str(out), "--description", "x", "--flag-threshold", "0.15"]
    assert main(argv) == 0
    assert read_card(out.with_suffix(".json"))["review"] == {"threshold": 0.15}
    assert any(
        "review flags at uncertainty >= 0.15" in line
        for line in card_lines(out.with_suffix(".json"))
    )
    assert load_checkpoint(out)["review"] == {"threshold": 0.15}
    synth = make_case(
        rng=np.random.default_rng(7), case_id="BraTS2021_00042", template="phantom",
        shape=(32, 32, 20), tumour_radius_mm=8.0,
    )  # fmt: skip
    folder = write_layout(synth, tmp_path / "in", layout="brats2020")
    seen = {}
    for name, extra in (("model", []), ("option", ["--flag-threshold", "0.9"])):
        dest = tmp_path / name
        assert main(["segment", str(folder), "-o", str(dest), "--model", str(out), *extra]) == 0
        summary = json.loads((dest / "BraTS2021_00042_summary.json").read_text())
        seen[name] = (summary["review"]["threshold"], summary["review"]["threshold_source"])
        assert summary["flag_threshold"] == seen[name][0]
        assert all(f["score"] >= seen[name][0] for f in summary["review"]["flags"])
    assert seen == {"model": (0.15, "model"), "option": (0.9, "--flag-threshold")}
    # A model without one: segment's default, said so.
    dest = tmp_path / "plain"
    assert (
        main(["segment", str(folder), "-o", str(dest), "--model", str(cv_root / "model.pt")]) == 0
    )
    review = json.loads((dest / "BraTS2021_00042_summary.json").read_text())["review"]
    assert (review["threshold"], review["threshold_source"]) == (0.3, "default")
    with pytest.raises(ValueError, match="between 0 and 1"):
        bundle_runs(runs, tmp_path / "n.pt", description="x", flag_threshold=1.5)
    assert not (tmp_path / "n.pt").exists()
    payload = load_checkpoint(out)
    payload["review"] = {"threshold": "high"}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="review threshold 'high'"):
        load_model(tmp_path / "bad.pt")


def test_accuracy_bench_scores_each_patient_with_the_member_that_never_saw_it(
    cv_root, synthetic_cache, capsys, tmp_path
):
    module = load_bench("accuracy")
    model = tmp_path / "tiny.pt"
    model.write_bytes((cv_root / "model.pt").read_bytes())
    (tmp_path / "tiny.json").write_text((cv_root / "model.json").read_text())
    # The same thread count as this process: main() sets it process-wide, and other tests
    # compare weights bit for bit with subprocesses that inherit the environment's.
    threads = str(torch.get_num_threads())
    argv = ["--model", str(model), "--cache", str(synthetic_cache), "--update-card"]
    assert module.main([*argv, "--threads", threads]) == 0
    report = json.loads(capsys.readouterr().out)
    results = report["results"]
    assert results["n_patients"] == 5
    folds = {f["fold"]: set(f["val_patients"]) for f in read_card(tmp_path / "tiny.json")["folds"]}
    for row in results["per_case"]:
        assert row["patient"] in folds[row["fold"]]
    # every patient scored once, by the member of the fold that held it out
    assert sorted(row["patient"] for row in results["per_case"]) == sorted(
        set().union(*folds.values())
    )
    wt = results["cross_validation"]["WT"]["dice"]
    dices = [row["metrics"]["WT"]["dice"] for row in results["per_case"]]
    assert wt["mean"] == pytest.approx(np.mean(dices)) and wt["n"] == 5
    card = read_card(tmp_path / "tiny.json")
    assert card["cross_validation"]["n_patients"] == 5
    listed = "\n".join(card_lines(tmp_path / "tiny.json"))
    assert "cross-validation Dice over 5 patients: WT" in listed
    assert f"{wt['mean']:.3f} mean" in listed
    # the card holds its row of the README's table of runs (bench/runs_table.py)
    row = card["table_row"]
    assert row["label"] == "tiny" and row["members"] == 5 and row["patients"] == 5
    assert row["without_postprocessing"]["WT"]["mean"] == pytest.approx(wt["mean"])
    assert row["markdown"].splitlines()[2].startswith("| tiny | test | 5 |")


def test_segment_applies_the_models_postprocessing_unless_overridden(cv_root, tmp_path):
    runs = [cv_root / f"fold{k}" for k in range(5)]
    model = tmp_path / "pp.pt"
    card = bundle_runs(runs, model, description="x", postprocess={"min_component_ml": 1e6})
    assert card["postprocessing"] == {"min_component_ml": 1e6}
    synth = make_case(
        rng=np.random.default_rng(8),
        case_id="BraTS2021_00043",
        template="phantom",
        shape=(32, 32, 20),
    )
    folder = write_layout(synth, tmp_path / "in", layout="brats2020")
    for flags, expected in (([], 1e6), (["--min-component-ml", "0"], 0.0)):
        out = tmp_path / f"out{len(flags)}"
        assert main(["segment", str(folder), "-o", str(out), "--model", str(model), *flags]) == 0
        summary = json.loads((out / "BraTS2021_00043_summary.json").read_text())
        assert summary["postprocessing"]["min_component_ml"] == expected
        if expected:
            assert summary["volumes_ml"]["WT"] == 0.0


def test_bundle_without_its_cache_is_an_error_not_an_empty_fold_list(cv_root, tmp_path):
    # Runs trained with a relative --data were bundled from another folder with no
    # validation patients at all, and bench/accuracy.py then scored nothing.
    with pytest.raises(InputError, match="pass --cache"):
        bundle_runs([cv_root / "fold0"], tmp_path / "x.pt", description="x", cache=tmp_path)
    assert not (tmp_path / "x.pt").exists()


def test_runs_store_an_absolute_cache_path(cv_root):
    assert Path(
        load_checkpoint(cv_root / "fold0" / "checkpoints" / "last.pt")["data"]
    ).is_absolute()


def test_accuracy_bench_unseen_scores_only_patients_no_member_saw(cv_root, synthetic_cache, capsys):
    module = load_bench("accuracy")
    index = load_index(synthetic_cache)
    folds = read_card(cv_root / "model.json")["folds"]
    assert module.unseen_patients(folds, index) == set()  # a complete CV saw them all
    assert module.unseen_patients(folds[:2], index) == set(index["folds"][2]["val"]) | set(
        index["folds"][3]["val"]
    ) | set(index["folds"][4]["val"])
    argv = ["--model", str(cv_root / "model.pt"), "--cache", str(synthetic_cache), "--unseen"]
    assert module.main([*argv, "--threads", str(torch.get_num_threads())]) == 2
    assert "every patient was in the model's training" in capsys.readouterr().err


def test_runs_table_rows_come_from_the_accuracy_report(cv_root, synthetic_cache, capsys, tmp_path):
    accuracy = load_bench("accuracy")
    argv = ["--model", str(cv_root / "model.pt"), "--cache", str(synthetic_cache)]
    assert accuracy.main([*argv, "--threads", str(torch.get_num_threads())]) == 0
    report = tmp_path / "cv.json"
    report.write_text(capsys.readouterr().out)
    table = load_bench("runs_table")
    assert table.main([str(report), "--label", "tiny"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["rows"]
    per_case = json.loads(report.read_text())["results"]["per_case"]
    dices = [c["metrics_without_postprocessing"]["WT"]["dice"] for c in per_case]
    assert row["members"] == 5 and row["patients"] == 5
    assert row["without_postprocessing"]["WT"]["worst"] == pytest.approx(min(dices))
    card = read_card(cv_root / "model.json")
    assert row["training_hours"] == pytest.approx(sum(card["training_seconds"]) / 3600, abs=0.01)
    assert row["cpu_hours"] == pytest.approx(sum(card["training_cpu_seconds"]) / 3600, abs=0.01)
    assert "| tiny | " in out["markdown"]


def test_card_sums_the_cpu_seconds_each_epoch_recorded(cv_root, tmp_path):
    card = read_card(cv_root / "model.json")
    for k, cpu in enumerate(card["training_cpu_seconds"]):
        with (cv_root / f"fold{k}" / "metrics.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert cpu == pytest.approx(sum(float(r["cpu_seconds"]) for r in rows), abs=0.1)
    # A run from before the column (or resumed across it) has no CPU figure, never a wrong one.
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.csv").write_text("epoch,seconds,cpu_seconds\n1,10.0,\n2,10.0,19.5\n")
    assert _train_seconds(old) == 20.0
    assert _train_seconds(old, "cpu_seconds") is None
    assert _cpu_seconds([old]) == {}


def test_accuracy_bench_with_adds_each_folds_member_of_another_bundle(
    cv_root, synthetic_cache, capsys, tmp_path
):
    module = load_bench("accuracy")
    # A partner whose output layer says "tumour" everywhere with a huge bias: the mean of
    # the logits is then positive everywhere, so only a prediction that used it has recall 1.
    payload = load_checkpoint(cv_root / "model.pt")
    state = payload["state_dict"]
    last_head: dict[str, str] = {}  # member -> its last 3-channel bias (the output layer)
    for key, value in state.items():
        if key.startswith("members.") and key.endswith("bias") and tuple(value.shape) == (3,):
            last_head[key.split(".")[1]] = key
    assert len(last_head) == 5
    for key in last_head.values():
        state[key] = torch.full_like(state[key], 1e4)
    partner = tmp_path / "partner.pt"
    torch.save(payload, partner)
    threads = str(torch.get_num_threads())
    base = ["--model", str(cv_root / "model.pt"), "--cache", str(synthetic_cache)]
    base += ["--threads", threads, "--min-component-ml", "0"]
    assert module.main(base) == 0
    alone = json.loads(capsys.readouterr().out)["results"]["per_case"]
    assert module.main([*base, "--with", str(partner)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["with"] == [str(partner)]
    both = report["results"]["per_case"]
    assert [r["case_id"] for r in both] == [r["case_id"] for r in alone]
    assert all(r["metrics"]["WT"]["recall"] == 1.0 for r in both)
    assert any(r["metrics"]["WT"]["recall"] < 1.0 for r in alone)
    # The table of runs counts both bundles' members (the partner's card beside it).
    (tmp_path / "partner.json").write_text((cv_root / "model.json").read_text())
    (tmp_path / "both.json").write_text(json.dumps(report))
    assert load_bench("runs_table").main([str(tmp_path / "both.json")]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["members"] == 10
    # Bundles of other folds cannot be paired fold by fold.
    payload["folds"] = payload["folds"][::-1]
    torch.save(payload, partner)
    assert module.main([*base, "--with", str(partner)]) == 2
    assert "its folds differ from --model's" in capsys.readouterr().err
    # Nor a bundle trained on arrays in another orientation.
    payload["folds"] = payload["folds"][::-1]
    payload["preprocessing"] = {**payload.get("preprocessing", {}), "axes": "LPS"}
    torch.save(payload, partner)
    assert module.main([*base, "--with", str(partner)]) == 2
    assert "other inputs or target" in capsys.readouterr().err
    assert module.main([*base, "--with", str(partner), "--update-card"]) == 2
    assert "no --update-card" in capsys.readouterr().err
    # A missing or corrupt bundle: one line naming it, no report.
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    for bad in (tmp_path / "missing.pt", tmp_path / "corrupt.pt"):
        assert module.main([*base, "--with", str(bad)]) == 2
        out, err = capsys.readouterr()
        assert not out and len(err.strip().splitlines()) == 1 and str(bad) in err
