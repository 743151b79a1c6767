"""evaluate_folders: pairing, per-case/per-slice CSVs, summary statistics, errors, CLI hooks."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.cli import evaluate as cli_ev
from gliomaseg.core.case import voxel_spacing
from gliomaseg.core.labels import BRATS2020
from gliomaseg.evaluate import metrics as m
from gliomaseg.evaluate import options, tables
from gliomaseg.evaluate import workflow as ev
from gliomaseg.io.nifti import read_label

SPACING = (1.0, 1.0, 2.0)
#: One flipped axis and 2 mm slices, to catch orientation and spacing bugs.
AFFINE = np.diag([-1.0, 1.0, 2.0, 1.0])


def _write(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.uint8), affine), str(path))
    return path


def _sphere_labels(
    shape: tuple[int, int, int],
    centre: tuple[float, float, float],
    radii: tuple[float, float, float],
) -> np.ndarray:
    """BraTS 2020 values: nested spheres 2 (edema) > 1 (necrosis) > 4 (enhancing)."""
    grid = np.indices(shape).astype(float)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    out = np.zeros(shape, dtype=np.uint8)
    out[dist <= radii[0]] = 2
    out[dist <= radii[1]] = 4
    out[dist <= radii[2]] = 1
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def tiny_set(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """gt: caseA, caseB, caseC (label NIfTIs); pred: caseA, caseB, caseD (``_seg`` names)."""
    shape = (20, 18, 10)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    pairs = {
        "caseA": (_sphere_labels(shape, (9, 9, 5), (6, 4, 2)), (10, 9, 5)),
        "caseB": (_sphere_labels(shape, (8, 8, 4), (5, 3, 1.5)), (8, 10, 4)),
    }
    truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for case_id, (ref, shifted_centre) in pairs.items():
        p = _sphere_labels(shape, shifted_centre, (5, 3, 1))
        _write(gt / f"{case_id}.nii.gz", ref)
        _write(pred / f"{case_id}_seg.nii.gz", p)
        truth[case_id] = (BRATS2020.encode(p), BRATS2020.encode(ref))
    _write(gt / "caseC.nii.gz", pairs["caseA"][0])
    _write(pred / "caseD_seg.nii.gz", pairs["caseA"][0])
    _write(pred / "caseA_probs.nii.gz", pairs["caseA"][0])  # not a prediction: ignored
    return pred, gt, truth


def test_pairs_cases_reports_missing_and_writes_reports(tiny_set, tmp_path):
    pred, gt, truth = tiny_set
    out = tmp_path / "out"
    result = ev.evaluate_folders(pred, gt, out)
    assert result.missing_predictions == ["caseC"]
    assert result.missing_references == ["caseD"]
    assert result.errors == {}
    rows = _read_csv(out / "per_case.csv")
    assert [r["case_id"] for r in rows] == ["caseA", "caseB"]
    expected_columns = ["case_id"] + [
        f"{k}_{name}"
        for k in ("WT", "TC", "ET", "label1", "label2", "label3")
        for name in m.METRIC_NAMES
    ]
    assert list(rows[0]) == expected_columns
    for row in rows:
        p, r = truth[row["case_id"]]
        direct = m.region_metrics(p, r, spacing=SPACING)
        for key, metrics in direct.items():
            for name, value in metrics.items():
                assert float(row[f"{key}_{name}"]) == pytest.approx(value, rel=1e-12)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2
    assert summary["missing_predictions"] == ["caseC"]
    assert summary["missing_references"] == ["caseD"]
    assert summary["empty_policy"]["name"] == "brats"
    assert summary["regions"] == ["WT", "TC", "ET", "label1", "label2", "label3"]
    dices = [float(r["WT_dice"]) for r in rows]
    stats = summary["metrics"]["WT"]["dice"]
    assert stats["mean"] == pytest.approx(np.mean(dices))
    assert stats["std"] == pytest.approx(np.std(dices, ddof=1))
    assert stats["median"] == pytest.approx(np.median(dices))
    assert stats["p25"] == pytest.approx(np.percentile(dices, 25))
    assert stats["p75"] == pytest.approx(np.percentile(dices, 75))
    assert stats["n"] == 2
    assert 0.3 < stats["mean"] < 1.0  # shifted spheres: overlapping, not identical


def test_per_slice_csv_has_only_slices_with_tumour(tiny_set, tmp_path):
    pred, gt, truth = tiny_set
    out = tmp_path / "out"
    ev.evaluate_folders(pred, gt, out, views=("slice",))
    assert not (out / "per_case.csv").exists()
    rows = _read_csv(out / "per_slice.csv")
    p, r = truth["caseA"]
    wt = [row for row in rows if row["case_id"] == "caseA" and row["region"] == "WT"]
    ref_slices = set(np.flatnonzero((p > 0).any(axis=(0, 1)) | (r > 0).any(axis=(0, 1))))
    assert {int(row["slice"]) for row in wt} == ref_slices
    sm = m.slice_metrics(p > 0, r > 0, spacing=SPACING)
    for row in wt:
        k = int(row["slice"])
        assert float(row["dice"]) == pytest.approx(sm["dice"][k])
        assert int(row["tp"]) == sm["tp"][k]
        assert float(row["ref_area_mm2"]) == pytest.approx(sm["ref_area_mm2"][k])


def test_summary_statistics_by_hand():
    s = tables.summary_statistics([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert s == {
        "mean": 2.5,
        "std": pytest.approx(1.2909944),
        "median": 2.5,
        "p25": 1.75,
        "p75": 3.25,
        "n": 4,
    }
    assert tables.summary_statistics([5.0])["std"] is None
    assert tables.summary_statistics([])["n"] == 0


def test_prediction_in_another_axis_order_is_reoriented(tiny_set, tmp_path):
    pred, gt, _ = tiny_set
    base = ev.evaluate_folders(pred, gt, tmp_path / "a", views=("case",))
    # Same labels stored with the x axis flipped the other way (RAS instead of LAS).
    raw, old = read_label(pred / "caseA_seg.nii.gz")
    data = np.asarray(raw)[::-1]
    affine = old.copy()
    affine[:3, 0] *= -1
    affine[:3, 3] = old[:3, :3] @ [data.shape[0] - 1, 0, 0] + old[:3, 3]
    _write(pred / "caseA_seg.nii.gz", data, affine)
    again = ev.evaluate_folders(pred, gt, tmp_path / "b", views=("case",))
    assert again.rows[0] == pytest.approx(base.rows[0])


def test_prediction_with_another_affine_is_compared_with_a_warning(tiny_set, tmp_path, caplog):
    pred, gt, _ = tiny_set
    raw, _ = read_label(pred / "caseA_seg.nii.gz")
    _write(pred / "caseA_seg.nii.gz", raw, np.diag([-1.0, 1.0, 3.0, 1.0]))
    with caplog.at_level("WARNING", logger="gliomaseg.evaluate.workflow"):
        result = ev.evaluate_folders(pred, gt, tmp_path / "out", views=("case",))
    assert "caseA" not in result.errors
    assert any("affine differs" in r.getMessage() for r in caplog.records)
    assert any("have no prediction" in r.getMessage() for r in caplog.records)


def test_unreadable_case_is_recorded_and_others_continue(tiny_set, tmp_path, caplog):
    pred, gt, _ = tiny_set
    _write(pred / "caseB_seg.nii.gz", np.zeros((5, 5, 5)))  # wrong grid
    (gt / "caseC.nii.gz").write_bytes(b"not a nifti")
    _write(pred / "caseC_seg.nii.gz", np.zeros((5, 5, 5)))
    result = ev.evaluate_folders(pred, gt, tmp_path / "out")
    assert [r["case_id"] for r in result.rows] == ["caseA"]
    assert set(result.errors) == {"caseB", "caseC"}
    assert "does not match the ground truth" in result.errors["caseB"]
    assert "caseC.nii.gz" in result.errors["caseC"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {e["case_id"] for e in summary["errors"]} == {"caseB", "caseC"}
    assert all("\n" not in e["error"] for e in summary["errors"])


def test_no_pairs_is_an_error(tiny_set, tmp_path):
    _, gt, _ = tiny_set
    other = tmp_path / "other"
    _write(other / "unrelated_seg.nii.gz", np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="no prediction matches"):
        ev.evaluate_folders(other, gt, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        ev.evaluate_folders(tmp_path / "absent", gt, tmp_path / "out")
    with pytest.raises(ValueError, match="no NIfTI predictions"):
        (tmp_path / "empty").mkdir()
        ev.evaluate_folders(tmp_path / "empty", gt, tmp_path / "out")
    with pytest.raises(ValueError, match="evaluation scheme"):
        ev.evaluate_folders(other, gt, tmp_path / "out", scheme="brats")


def test_duplicate_predictions_for_one_case_are_an_error(tiny_set, tmp_path):
    pred, gt, _ = tiny_set
    shutil.copy(pred / "caseA_seg.nii.gz", pred / "caseA.nii.gz")
    with pytest.raises(ValueError, match="one prediction file per case"):
        ev.evaluate_folders(pred, gt, tmp_path / "out")


def test_binary_mode_counts_any_nonzero_label(tmp_path):
    shape = (12, 12, 6)
    ref = np.zeros(shape, dtype=np.uint8)
    ref[2:8, 2:8, 1:4] = 1
    pred = np.zeros(shape, dtype=np.uint8)
    pred[2:8, 2:6, 1:4] = 255  # any non-zero value is tumour
    _write(tmp_path / "gt" / "lgg1.nii.gz", ref)
    _write(tmp_path / "pred" / "lgg1_seg.nii.gz", pred)
    result = ev.evaluate_folders(
        tmp_path / "pred", tmp_path / "gt", tmp_path / "out", scheme="binary"
    )
    row = result.rows[0]
    assert [k for k in row if k.endswith("_dice")] == ["tumour_dice"]
    assert row["tumour_dice"] == pytest.approx(2 * 72 / (72 + 108))
    assert row["tumour_ref_volume_ml"] == pytest.approx(108 * 2 / 1000)
    assert result.summary["mode"] == "binary"


def test_brats_folder_ground_truth_and_lgg_stack(tmp_path, rng):
    from gliomaseg.io.layouts import find_cases, read_case
    from gliomaseg.io.segmentation import write_segmentation
    from gliomaseg.io.writers import write_layout
    from gliomaseg.synthetic.phantoms import make_case

    for layout in ("brats2020", "lgg-tiff"):
        case = make_case(
            rng=rng,
            case_id=f"syn_{layout.replace('-', '')}",
            template="phantom",
            shape=(24, 22, 12),
        )
        gt = tmp_path / layout / "gt"
        write_layout(case, gt, layout=layout)
        ref = read_case(find_cases(gt)[0])
        assert ref.label is not None
        pred_dir = tmp_path / layout / "pred"
        write_segmentation(ref, ref.label, pred_dir / f"{ref.case_id}_seg.nii.gz")
        result = ev.evaluate_folders(pred_dir, gt, tmp_path / layout / "out")
        assert result.errors == {} and len(result.rows) == 1
        row = result.rows[0]
        if layout == "lgg-tiff":
            assert result.summary["mode"] == "binary"
            assert row["tumour_dice"] == 1.0 and row["tumour_hd95_mm"] == 0.0
        else:
            assert result.summary["mode"] == "regions"
            assert all(row[f"{k}_dice"] == 1.0 for k in ("WT", "TC", "ET"))


def test_cli_hooks_exit_codes(tiny_set, tmp_path, capsys):
    pred, gt, _ = tiny_set
    parser = argparse.ArgumentParser()
    cli_ev.add_arguments(parser)
    args = parser.parse_args(["--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "o")])
    assert cli_ev.run(args) == 0
    out = capsys.readouterr().out
    assert "2 case(s) evaluated" in out and "caseC" in out
    printed = [line.split()[0] for line in out.splitlines() if "Dice" in line]
    assert printed == ["WT", "TC", "ET", "NCR/NET", "ED"]  # names, not label1..3 (label3 is ET)
    bad = parser.parse_args(["--pred", str(tmp_path / "nope"), "--gt", str(gt), "-o", "x"])
    assert cli_ev.run(bad) == 2
    assert "nope" in capsys.readouterr().err
    views = parser.parse_args(["--pred", str(pred), "--gt", str(gt), "-o", "x", "--views", "cube"])
    assert cli_ev.run(views) == 2
    assert tuple(m.EMPTY_POLICIES) == options.EMPTY_CHOICES


@pytest.mark.realdata
def test_real_tcga_end_to_end(shared_data, tmp_path):
    cases = sorted((shared_data / "brats_auto_labels").glob("TCGA-*"))
    if not cases:
        pytest.skip("no TCGA-* cases in the shared data")
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for case in cases:
        shutil.copy(
            case / "brats2020_algorithms" / "isen-20.nii.gz", pred / f"{case.name}_seg.nii.gz"
        )
        (gt / f"{case.name}.nii.gz").symlink_to(case / "fusion" / "mav.nii.gz")
    result = ev.evaluate_folders(pred, gt, tmp_path / "out")
    assert result.errors == {} and not result.missing_predictions
    assert [r["case_id"] for r in result.rows] == [c.name for c in cases]
    for case, row in zip(cases, result.rows, strict=True):
        raw_p, affine = read_label(case / "brats2020_algorithms" / "isen-20.nii.gz")
        raw_r, _ = read_label(case / "fusion" / "mav.nii.gz")
        p, r = BRATS2020.encode(raw_p), BRATS2020.encode(raw_r)
        direct = m.region_metrics(p, r, spacing=voxel_spacing(affine))
        for region in ("WT", "TC", "ET"):
            assert row[f"{region}_dice"] == pytest.approx(direct[region]["dice"])
            assert row[f"{region}_hd95_mm"] == pytest.approx(direct[region]["hd95_mm"])
        assert row["WT_dice"] > 0.9
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_cases"] == len(cases)
    assert not math.isnan(summary["metrics"]["WT"]["dice"]["mean"])
    assert (tmp_path / "out" / "per_slice.csv").stat().st_size > 0
