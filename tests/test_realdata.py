"""Real-data checks on ../shared/data (skipped with a reason when it is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.layouts import find_cases, read_case

pytestmark = pytest.mark.realdata


def test_brats2021_and_brats2023_naming_give_identical_canonical_cases(shared_data):
    a = read_case(shared_data / "brats" / "BraTS2021_00000")
    b = read_case(shared_data / "brats" / "BraTS-GLI-00000-000")
    assert (a.layout, b.layout) == ("brats2020", "brats2023")
    assert a.scheme is not None and b.scheme is not None
    assert (a.scheme.name, b.scheme.name) == ("brats2020", "brats2023")
    assert a.modalities == b.modalities == ("flair", "t1", "t1ce", "t2")
    assert a.image is not None and b.image is not None
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert set(np.unique(a.label)) == {0, 1, 2, 3}


def test_kaggle_h5_slice_equals_axial_slice_of_the_source_nifti(shared_data):
    h5 = read_case(shared_data / "brats2020_h5_slices" / "volume_7_slice_64.h5")
    vol = read_case(shared_data / "brats" / "BraTS19_CBICA_ABM_1")
    assert h5.modalities == vol.modalities
    assert h5.image is not None and vol.image is not None
    assert h5.shape == (240, 240, 1)
    # Same scanner position: the h5 slice sits at z = 64 on the BraTS grid.
    np.testing.assert_allclose(h5.affine[:3, :3], vol.affine[:3, :3])
    world_h5 = h5.affine @ np.array([10, 20, 0, 1.0])
    world_vol = vol.affine @ np.array([10, 20, 64, 1.0])
    np.testing.assert_allclose(world_h5, world_vol)
    # Labels: identical voxel for voxel.
    assert h5.label is not None and vol.label is not None
    np.testing.assert_array_equal(h5.label[..., 0], vol.label[..., 64])
    # Images: the Kaggle files z-score each slice over the whole slice; do the same to the NIfTI.
    for c in range(4):
        ref = vol.image[c, :, :, 64].astype(np.float64)
        ref = (ref - ref.mean()) / ref.std()
        np.testing.assert_allclose(h5.image[c, :, :, 0], ref, atol=1e-4)


def test_lgg_slices_come_out_in_slice_number_order(shared_data):
    import tifffile

    folder = shared_data / "lgg" / "kaggle_3m_sample" / "TCGA_DU_6399_19830416"
    case = read_case(folder)
    numbers = [int(name.rsplit("_", 1)[1]) for name in case.slice_names]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 10  # 10 must come after 9, not after 1
    assert case.image is not None and case.label is not None
    t1, flair, t1ce = (case.modalities.index(m) for m in ("t1", "flair", "t1ce"))
    image, label = case.to_source(case.image), case.to_source(case.label)  # TIFF order
    for k in (0, 9, len(numbers) - 1):
        raw = tifffile.imread(folder / f"{case.slice_names[k]}.tif")
        np.testing.assert_array_equal(image[t1, :, :, k], raw[..., 0])
        np.testing.assert_array_equal(image[flair, :, :, k], raw[..., 1])
        np.testing.assert_array_equal(image[t1ce, :, :, k], raw[..., 2])
        mask = tifffile.imread(folder / f"{case.slice_names[k]}_mask.tif")
        np.testing.assert_array_equal(label[:, :, k], (mask > 0).astype(np.uint8))


def test_inspect_json_reports_wt_volume_in_ml(shared_data, capsys):
    folder = shared_data / "brats" / "BraTS2021_00000"
    assert main(["inspect", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (case,) = report["cases"]
    seg = nib.load(folder / "BraTS2021_00000_seg.nii.gz")
    raw = np.asarray(seg.dataobj)
    voxel_ml = float(np.prod(seg.header.get_zooms()[:3])) / 1000.0
    assert case["volume_ml"]["WT"] == pytest.approx(
        np.isin(raw, (1, 2, 4)).sum() * voxel_ml, abs=1e-4
    )
    assert case["volume_ml"]["TC"] == pytest.approx(np.isin(raw, (1, 4)).sum() * voxel_ml, abs=1e-4)
    assert case["volume_ml"]["ET"] == pytest.approx((raw == 4).sum() * voxel_ml, abs=1e-4)
    assert case["orientation"] == "LPS"
    assert case["label_scheme"] == "brats2020"


@pytest.mark.slow
def test_inspect_json_works_on_every_case_in_shared_data(shared_data, capsys):
    n_refs = len(find_cases(shared_data))
    assert main(["inspect", str(shared_data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == []
    assert len(report["cases"]) == n_refs
    layouts = {c["layout"] for c in report["cases"]}
    assert {"brats2020", "brats2023", "upenn-gbm", "brats2013", "kaggle-h5", "lgg-tiff"} <= layouts
    for c in report["cases"]:
        if "volume_ml" in c:
            wt_ml = c["voxels"]["WT"] * c["voxel_volume_ml"]
            assert c["volume_ml"]["WT"] == pytest.approx(wt_ml, abs=1e-4), c["case_id"]


def test_brats2013_two_modality_case_reports_missing_modalities_by_name(shared_data):
    case = read_case(shared_data / "brats2013_two_modality" / "brats_2013_pat0001_1")
    assert case.modalities == ("flair", "t1ce")
    assert case.brain_mask is not None and case.brain_mask.any()
    assert case.scheme is not None and case.scheme.name == "brats2013"
    with pytest.raises(ValueError, match="missing modality t1, t2"):
        case.channels(("flair", "t1", "t1ce", "t2"))


def test_tcga_images_folder_takes_the_patient_folder_name(shared_data):
    refs = find_cases(shared_data / "brats_auto_labels" / "TCGA-FG-6692")
    ids = {r.case_id for r in refs if r.layout == "named-nifti"}
    assert ids == {"TCGA-FG-6692"}


def _bundled(name: str) -> Path:
    from gliomaseg.segment.models import WEIGHTS_DIR

    if not (WEIGHTS_DIR / f"{name}.pt").exists():
        pytest.skip(f"no bundled '{name}' model in {WEIGHTS_DIR}")
    return WEIGHTS_DIR / f"{name}.pt"


def _dice_of(eval_dir, region: str) -> float:
    import csv

    with (eval_dir / "per_case.csv").open() as handle:
        return float(next(csv.DictReader(handle))[f"{region}_dice"])


def test_bundled_lgg_model_segments_an_lgg_patient(shared_data, tmp_path):
    # A smoke test, not an accuracy claim: the patient may have been in training.
    _bundled("lgg")
    patient = sorted((shared_data / "lgg" / "kaggle_3m_sample").glob("TCGA_*"))[0]
    out = tmp_path / "out"
    assert main(["segment", str(patient), "-o", str(out), "--model", "lgg"]) == 0
    assert list(out.glob(f"{patient.name}/*_pred.tif"))
    assert (
        main(["evaluate", "--pred", str(out), "--gt", str(patient), "-o", str(tmp_path / "e")]) == 0
    )
    assert _dice_of(tmp_path / "e", "tumour") > 0.5


def test_bundled_brats_model_segments_a_brats_case(shared_data, tmp_path):
    _bundled("brats")
    case = shared_data / "brats" / "BraTS2021_00003"
    out = tmp_path / "out"
    assert main(["segment", str(case), "-o", str(out), "--model", "brats"]) == 0
    assert main(["evaluate", "--pred", str(out), "--gt", str(case), "-o", str(tmp_path / "e")]) == 0
    assert _dice_of(tmp_path / "e", "WT") > 0.7
    assert _dice_of(tmp_path / "e", "TC") > 0.4


#: The four slices with the largest tumours per their masks (volume_7, BraTS19_CBICA_ABM_1,
#: is left out: that patient is in the brats model's training set). Measured with the
#: bundled brats model (60 epochs, 2026-11-29 session 7): WT Dice 0.80, 0.95, 0.95, 0.95 (mean
#: 0.91; an earlier bundled model: 0.43, 0.71, 0.84, 0.90); before 2D input skipped
#: the 10 mL rule all four were 0, and before the slice's constant background was kept out
#: of the brain mask they were 0.01, 0.23, 0.47, 0.36.
H5_TUMOUR_SLICES = (
    "volume_137_slice_65",
    "volume_175_slice_65",
    "volume_138_slice_74",
    "volume_163_slice_88",
)


def test_bundled_brats_model_finds_the_tumours_of_real_hdf5_slices(shared_data, tmp_path, capsys):
    import csv

    card = json.loads(_bundled("brats").with_suffix(".json").read_text())
    data = tmp_path / "slices"
    data.mkdir()
    for name in H5_TUMOUR_SLICES:
        (data / f"{name}.h5").symlink_to(shared_data / "brats2020_h5_slices" / f"{name}.h5")
    out, evaluation = tmp_path / "out", tmp_path / "e"
    assert main(["segment", str(data), "-o", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert "using the bundled brats model" in capsys.readouterr().err  # no --model: chosen
    for name in H5_TUMOUR_SLICES:
        summary = json.loads((out / f"{name}_summary.json").read_text())
        record = summary["postprocessing"]
        assert (
            record["min_component_ml"] == card["postprocessing"]["min_component_ml"] > 0
        )  # rule...
        assert record["skipped"].startswith("skipped: 2D input")  # ...not applied to a slice
        assert record["components_removed"] == 0
        assert summary["volumes_ml"]["WT"] > 0
    assert main(["evaluate", "--pred", str(out), "--gt", str(data), "-o", str(evaluation)]) == 0
    with (evaluation / "per_case.csv").open() as handle:
        dice = {row["case_id"]: float(row["WT_dice"]) for row in csv.DictReader(handle)}
    assert sorted(dice) == sorted(H5_TUMOUR_SLICES)
    assert min(dice.values()) > 0.3, dice
    assert np.mean(list(dice.values())) > 0.6, dice
