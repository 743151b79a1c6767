"""segment: masks land on the tumour, in the input's geometry; batch behaviour; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.writers import write_layout
from gliomaseg.prepare.workflow import PrepareConfig, prepare_dataset
from gliomaseg.synthetic.phantoms import make_case
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.loop import train


@pytest.fixture
def model_path(tiny_run) -> Path:
    """The small region model trained on synthetic phantoms (tests/conftest.py)."""
    return tiny_run / "checkpoints" / "best.pt"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.mark.parametrize("layout", ["brats2020", "brats2023"])
def test_segment_output_has_input_geometry_and_lands_on_the_tumour(model_path, tmp_path, layout):
    synth = make_case(
        rng=np.random.default_rng(31),
        case_id="Case_777",
        template="phantom",
        shape=(32, 32, 20),
        tumour_radius_mm=8.0,
        spacing=(1.0, 1.0, 2.0),
        flip_axis=0,
    )
    assert synth.affine[0, 0] < 0  # non-identity: flipped x, 2 mm slices
    folder = write_layout(synth, tmp_path / "in", layout=layout)
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(folder),
                "-o",
                str(out),
                "--model",
                str(model_path),
                "--no-progress",
                "--save-probabilities",
            ]
        )
        == 0
    )
    seg = nib.load(out / "Case_777_seg.nii.gz")
    ref = nib.load(
        next(folder.glob("*flair*")) if layout == "brats2020" else next(folder.glob("*t2f*"))
    )
    assert seg.shape == ref.shape
    np.testing.assert_allclose(seg.affine, ref.affine)
    raw = np.asarray(seg.dataobj)
    et_value = 4 if layout == "brats2020" else 3
    assert set(np.unique(raw)) <= {0, 1, 2, et_value}
    assert _dice(raw > 0, synth.label > 0) > 0.7  # 0.89-0.96: seeds 0-2, float32 and bf16
    summary = json.loads((out / "Case_777_summary.json").read_text())
    # The volume is that of the written mask (exact); how close the mask is to the truth is
    # the Dice above. (Against the truth's volume, rel=0.35, the ratio was 0.90-1.21 over
    # training seeds 0-2 in float32 and bf16: too little margin for a test.)
    assert summary["volumes_ml"]["WT"] == pytest.approx((raw > 0).sum() * 0.002, abs=1e-4)
    assert summary["label_scheme"] == layout
    assert len(summary["slices"]) == 20
    review = summary["review"]
    assert summary["flagged_slices"] == [f["slice"] for f in review["flags"]]
    assert len(review["flags"]) <= review["max_flags"]
    assert summary["hemisphere"] == synth.hemisphere
    probs = nib.load(out / "Case_777_probs.nii.gz")
    assert probs.shape == (*ref.shape, 3)


def test_batch_skips_finished_cases_and_continues_past_a_bad_one(model_path, tmp_path, capsys):
    for i in range(3):
        synth = make_case(
            rng=np.random.default_rng(i),
            case_id=f"BraTS2021_{i:05d}",
            template="phantom",
            shape=(32, 32, 16),
        )
        write_layout(synth, tmp_path / "in", layout="brats2020")
    bad = tmp_path / "in" / "BraTS2021_00001" / "BraTS2021_00001_t1.nii.gz"
    bad.write_bytes(b"not a nifti")
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "in"),
                "-o",
                str(out),
                "--model",
                str(model_path),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "BraTS2021_00001_t1.nii.gz" in err and "1 case(s) failed" in err
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == [
        "BraTS2021_00000_seg.nii.gz",
        "BraTS2021_00002_seg.nii.gz",
    ]
    assert not list(out.glob(".gstmp-*"))  # no temporary files left
    mtime = (out / "BraTS2021_00000_seg.nii.gz").stat().st_mtime_ns
    bad.unlink()
    assert (
        main(
            [
                "segment",
                str(tmp_path / "in"),
                "-o",
                str(out),
                "--model",
                str(model_path),
                "--no-progress",
            ]
        )
        == 2
    )
    assert (out / "BraTS2021_00000_seg.nii.gz").stat().st_mtime_ns == mtime  # skipped, not redone


def test_part_shards_cases(model_path, tmp_path):
    for i in range(4):
        synth = make_case(
            rng=np.random.default_rng(i),
            case_id=f"BraTS2021_{i:05d}",
            template="phantom",
            shape=(32, 32, 8),
        )
        write_layout(synth, tmp_path / "in", layout="brats2020")
    for part in ("1/2", "2/2"):
        assert (
            main(
                [
                    "segment",
                    str(tmp_path / "in"),
                    "-o",
                    str(tmp_path / part[0]),
                    "--model",
                    str(model_path),
                    "--part",
                    part,
                    "--no-progress",
                ]
            )
            == 0
        )
    first = {p.name for p in (tmp_path / "1").glob("*_seg.nii.gz")}
    second = {p.name for p in (tmp_path / "2").glob("*_seg.nii.gz")}
    assert len(first) == len(second) == 2 and not first & second


def test_lgg_output_mirrors_the_input(model_path, tmp_path):
    # A 4-modality model cannot read LGG stacks: reported by name, nothing written.
    synth = make_case(
        rng=np.random.default_rng(5),
        case_id="TCGA_CS_4941_19960909",
        template="phantom",
        shape=(32, 32, 6),
    )
    folder = write_layout(synth, tmp_path / "in", layout="lgg-tiff")
    assert (
        main(
            [
                "segment",
                str(folder),
                "-o",
                str(tmp_path / "out"),
                "--model",
                str(model_path),
                "--no-progress",
            ]
        )
        == 2
    )
    assert not list((tmp_path / "out").glob("*_seg.nii.gz"))


def test_unknown_model_name_is_reported(tmp_path, capsys):
    synth = make_case(
        rng=np.random.default_rng(1),
        case_id="BraTS2021_00001",
        template="phantom",
        shape=(16, 16, 8),
    )
    folder = write_layout(synth, tmp_path / "in", layout="brats2020")
    assert (
        main(["segment", str(folder), "-o", str(tmp_path / "out"), "--model", "nonexistent-model"])
        == 2
    )
    assert "no bundled model 'nonexistent-model'" in capsys.readouterr().err


def test_a_3d_model_segments_by_sliding_window(tmp_path):
    """A (briefly trained) 3D preset segments through MONAI's sliding window, on the input grid."""
    from gliomaseg.train.config import load_config

    root = tmp_path
    for i in range(2):
        synth = make_case(
            rng=np.random.default_rng(300 + i),
            case_id=f"T3_{i}",
            template="phantom",
            shape=(32, 32, 20),
        )
        write_layout(synth, root / "raw", layout="brats2020")
    prepare_dataset(root / "raw", root / "cache", config=PrepareConfig(folds=0, margin=0))
    data = {
        **load_config("brats-regions-3d").to_dict(),
        "epochs": 1,
        "steps_per_epoch": 1,
        "batch_size": 1,
        "fold": -1,
        "patch_size": [16, 32, 32],
        "model": {"name": "unet", "spatial_dims": 3, "features": [4, 8, 16]},
    }
    train(TrainConfig.from_dict(data), root / "cache", root / "run", progress=False)
    synth = make_case(
        rng=np.random.default_rng(9), case_id="Case_3D", template="phantom", shape=(30, 34, 18)
    )
    folder = write_layout(synth, root / "in", layout="brats2020")
    assert (
        main(
            [
                "segment",
                str(folder),
                "-o",
                str(root / "out"),
                "--model",
                str(root / "run/checkpoints/best.pt"),
                "--no-progress",
            ]
        )
        == 0
    )
    seg = nib.load(root / "out" / "Case_3D_seg.nii.gz")
    assert seg.shape == (30, 34, 18)
    np.testing.assert_allclose(seg.affine, synth.affine)


def test_lgg_stack_output_mirrors_the_input(tmp_path):
    """A 3-channel binary model on an LGG folder: one _pred.tif per slice plus a stacked NIfTI."""
    import tifffile

    from conftest import TINY_TRAIN

    for i in range(3):
        synth = make_case(
            rng=np.random.default_rng(40 + i),
            case_id=f"TCGA_CS_{4940 + i}_19960909",
            template="phantom",
            shape=(32, 32, 10),
            tumour_radius_mm=8.0,
        )
        if i == 0:  # post-contrast missing, filled with FLAIR as the Kaggle LGG set does
            synth.images["t1ce"] = synth.images["flair"].copy()
        write_layout(synth, tmp_path / "raw", layout="lgg-tiff")
    cfg = {
        **TINY_TRAIN,
        "target": "binary",
        "modalities": ["t1", "flair", "t1ce"],
        "epochs": 1,
        "steps_per_epoch": 4,
        "fold": -1,
    }
    # --data takes the raw folder: it is prepared into RUN_DIR/cache first.
    train(TrainConfig.from_dict(cfg), tmp_path / "raw", tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "cache" / "index.json").exists()
    patient = tmp_path / "raw" / "TCGA_CS_4940_19960909"
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(patient),
                "-o",
                str(out),
                "--model",
                str(tmp_path / "run/checkpoints/best.pt"),
                "--no-progress",
            ]
        )
        == 0
    )
    preds = sorted(
        (out / patient.name).glob("*_pred.tif"), key=lambda p: int(p.stem.split("_")[-2])
    )
    assert [p.name for p in preds] == [f"{patient.name}_{n}_pred.tif" for n in range(1, 11)]
    first = tifffile.imread(preds[0])
    assert first.shape == tifffile.imread(patient / f"{patient.name}_1.tif").shape[:2]
    assert first.dtype == np.uint8 and set(np.unique(first)) <= {0, 255}
    stacked = nib.load(out / f"{patient.name}_seg.nii.gz")
    assert stacked.shape == (32, 32, 10)
    summary = json.loads((out / f"{patient.name}_summary.json").read_text())
    assert summary["label_scheme"] == "lgg" and not summary["spacing_known"]
    assert summary["input_notes"] == {"t1ce": "copy of FLAIR (sequence missing in the source)"}
    assert [s["slice"] for s in summary["slices"]][:2] == [f"{patient.name}_1", f"{patient.name}_2"]


def test_save_probabilities_writes_uint8_scaled_by_1_255(tmp_path):
    """Probabilities (clipped to 0-1) are stored as uint8 p * 255 with scl_slope 1/255, on the
    input grid; nibabel reads them back within half a step (0.5/255) of the floats."""
    from gliomaseg.io.layouts import read_case
    from gliomaseg.segment.workflow import _write_probabilities

    synth = make_case(
        rng=np.random.default_rng(4),
        case_id="Case_p",
        template="phantom",
        shape=(12, 10, 6),
        spacing=(1.0, 1.0, 2.0),
        flip_axis=0,
    )
    case = read_case(write_layout(synth, tmp_path / "in", layout="brats2020"))
    probs = np.random.default_rng(5).uniform(-0.1, 1.1, (3, *case.shape)).astype(np.float32)
    probs[0, 0, 0, 0], probs[0, 1, 0, 0] = 0.5 / 255 - 1e-4, 0.5 / 255 + 1e-4  # rounding edges
    path = tmp_path / "p.nii.gz"
    _write_probabilities(case, probs, path)
    img = nib.load(path)
    assert img.get_data_dtype() == np.uint8
    # nibabel moves scl_slope/scl_inter from the header onto the array proxy when loading
    assert img.dataobj.slope == pytest.approx(1 / 255, rel=1e-6)
    assert img.dataobj.inter == 0.0
    assert img.shape == (12, 10, 6, 3)
    np.testing.assert_allclose(img.affine, synth.affine)
    expected = np.moveaxis(case.to_source(np.clip(probs, 0, 1)), 0, -1)
    back = img.get_fdata()
    assert np.abs(back - expected).max() <= 0.5 / 255 + 1e-6
    stored = np.asarray(img.dataobj.get_unscaled())
    assert stored.dtype == np.uint8 and stored.min() == 0 and stored.max() == 255
    # the canonical grid's x axis is flipped back: voxel (0, 0, 0) lands at x = 11
    assert stored[11, 0, 0, 0] == 0 and stored[10, 0, 0, 0] == 1


def test_tta_flag_reaches_inference_and_probabilities_match_the_summary(
    model_path, tmp_path, monkeypatch
):
    from gliomaseg.segment import workflow

    seen: list[bool] = []
    real = workflow.predict_volume

    def spy(*args, **kwargs):
        seen.append(kwargs["tta"])
        return real(*args, **kwargs)

    monkeypatch.setattr(workflow, "predict_volume", spy)
    synth = make_case(
        rng=np.random.default_rng(32),
        case_id="Case_778",
        template="phantom",
        shape=(32, 32, 20),
        tumour_radius_mm=8.0,
        flip_axis=0,
    )
    folder = write_layout(synth, tmp_path / "in", layout="brats2020")
    maps = {}
    for flags in ([], ["--tta"]):
        out = tmp_path / f"out{len(flags)}"
        argv = ["segment", str(folder), "-o", str(out), "--model", str(model_path)]
        assert main([*argv, "--no-progress", "--save-probabilities", *flags]) == 0
        summary = json.loads((out / "Case_778_summary.json").read_text())
        assert summary["tta"] is bool(flags)
        maps[bool(flags)] = probs = nib.load(out / "Case_778_probs.nii.gz").get_fdata()
        # regions target: tumour probability is the largest channel; x is flipped, z is not
        per_slice = probs.max(axis=(0, 1, 3))
        recorded = [s["max_tumour_probability"] for s in summary["slices"]]
        np.testing.assert_allclose(per_slice, recorded, atol=0.5 / 255 + 1e-4)
    assert seen == [False, True]
    assert np.abs(maps[True] - maps[False]).max() > 2 / 255  # the flips changed something


def _lgg_patient(tmp_path: Path) -> Path:
    """A synthetic LGG TIFF patient (pre-contrast, FLAIR, post-contrast slices + masks)."""
    synth = make_case(
        rng=np.random.default_rng(41),
        case_id="TCGA_CS_4941_19960909",
        template="phantom",
        shape=(48, 48, 6),
        tumour_radius_mm=10.0,
    )
    return write_layout(synth, tmp_path / "lgg", layout="lgg-tiff")


def _bundled_or_skip(*names: str) -> None:
    from gliomaseg.segment.models import WEIGHTS_DIR

    for name in names:
        if not (WEIGHTS_DIR / f"{name}.pt").exists():
            pytest.skip(f"no bundled '{name}' model in {WEIGHTS_DIR}")


def test_segment_without_model_picks_lgg_for_an_lgg_folder_and_says_so(tmp_path, capsys):
    _bundled_or_skip("lgg")
    patient = _lgg_patient(tmp_path)
    out = tmp_path / "out"
    assert main(["segment", str(patient), "-o", str(out), "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["gliomaseg: using the bundled lgg model for LGG TIFF input"]
    summary = json.loads((out / f"{patient.name}_summary.json").read_text())
    assert Path(summary["model"]).name == "lgg.pt"
    assert len(list((out / patient.name).glob("*_pred.tif"))) == 6


def test_segment_with_a_model_that_does_not_fit_says_which_does(tmp_path, capsys):
    _bundled_or_skip("brats", "lgg")
    patient = _lgg_patient(tmp_path)
    out = tmp_path / "out"
    args = ["segment", str(patient), "-o", str(out), "--model", "brats", "--device", "cpu"]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert str(patient) in line and "no t2" in line and "--model lgg" in line
    assert "1 case(s) failed" in err  # the batch's closing line
    assert not (out / f"{patient.name}_seg.nii.gz").exists()


def test_summary_carries_the_documented_review_fields(model_path, tmp_path):
    """README 'Segmenting': ``review`` (ranked flags in the input's slice index, confidence,
    threshold, bound, components) and a per-slice ``uncertainty``; z is stored flipped so
    canonical and input slice numbers differ."""
    synth = make_case(
        rng=np.random.default_rng(32),
        case_id="Case_778",
        template="phantom",
        shape=(32, 32, 20),
        tumour_radius_mm=8.0,
        spacing=(1.0, 1.0, 2.0),
        flip_axis=2,
    )
    folder = write_layout(synth, tmp_path / "in", layout="brats2020")
    out = tmp_path / "out"
    argv = ["segment", str(folder), "-o", str(out), "--model", str(model_path)]
    assert main([*argv, "--no-progress", "--tta", "--flag-threshold", "0"]) == 0
    summary = json.loads((out / "Case_778_summary.json").read_text())
    review = summary["review"]
    assert set(review) >= {
        "flags",
        "confidence",
        "threshold",
        "max_flags",
        "components",
        "variants",
        "input_axis",
    }
    assert review["threshold"] == 0 and review["variants"] == 4  # one model, four flips
    assert review["components"] == ["boundary", "disagreement", "edge"]
    assert 0.0 <= review["confidence"] <= 1.0
    flags = review["flags"]
    assert 0 < len(flags) <= review["max_flags"]  # threshold 0: the bound decides
    assert [f["score"] for f in flags] == sorted((f["score"] for f in flags), reverse=True)
    assert all(set(f) == {"slice", "index", "score", "reason"} for f in flags)
    assert all(0.0 <= s["uncertainty"] <= 1.0 for s in summary["slices"])
    # input index: the written mask's slice `index` holds the canonical slice's tumour
    seg = np.asarray(nib.load(out / "Case_778_seg.nii.gz").dataobj)
    canonical = {str(s["slice"]): int(s["index"]) for s in summary["slices"]}
    assert review["input_axis"] == 2
    own = {str(s["slice"]): int(s["input_index"]) for s in summary["slices"]}
    assert all(own[k] == 19 - canonical[k] for k in canonical)
    for f in flags:
        assert f["index"] == 19 - canonical[f["slice"]] == own[f["slice"]]  # z stored flipped
        assert 0 <= f["index"] < seg.shape[2]
