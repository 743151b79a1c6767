"""prepare: resumable cache, patient identity across naming schemes, memory maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.cache import CACHE_FORMAT, case_dir, is_cache, load_index, open_case
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.layouts import read_case
from gliomaseg.io.writers import write_layout
from gliomaseg.prepare.crop import CropInfo, uncrop
from gliomaseg.prepare.workflow import patient_of, stratum_of
from gliomaseg.synthetic.phantoms import make_case


def test_prepare_resumes_and_keeps_geometry(tmp_path, capsys):
    for i in range(3):
        synth = make_case(
            rng=np.random.default_rng(i),
            case_id=f"BraTS2021_{i:05d}",
            template="phantom",
            shape=(20, 22, 12),
        )
        write_layout(synth, tmp_path / "raw", layout="brats2020")
    cache = tmp_path / "cache"
    assert main(["prepare", str(tmp_path / "raw"), "-o", str(cache), "--folds", "3"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["prepared_now"] == 3 and first["slices_in_cache"] > 0
    # An interrupted run leaves finished cases: a rerun skips them and redoes the rest.
    (cache / "index.json").unlink()
    import shutil

    shutil.rmtree(cache / "cases" / "BraTS2021_00001")
    assert main(["prepare", str(tmp_path / "raw"), "-o", str(cache), "--folds", "3"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["prepared_now"], second["skipped_existing"]) == (1, 2)
    index = json.loads((cache / "index.json").read_text())
    assert len(index["folds"]) == 3
    vals = [p for f in index["folds"] for p in f["val"]]
    assert sorted(vals) == sorted({c["patient"] for c in index["cases"]})
    # Memory-mapped slices hold the z-scored, cropped image; the crop undoes exactly.
    image, label, meta = open_case(cache, "BraTS2021_00000")
    assert isinstance(image, np.memmap) and image.dtype == np.float16
    case = read_case(tmp_path / "raw" / "BraTS2021_00000")
    crop = CropInfo.from_dict(meta["crop"])
    restored = uncrop(np.moveaxis(np.asarray(label), 0, -1), crop)
    np.testing.assert_array_equal(restored, case.label)
    assert meta["tumour_pixels"] == [
        int((case.label[:, :, z] > 0).sum()) for z in range(crop.start[2], crop.stop[2])
    ]


def test_other_settings_need_overwrite(tmp_path, capsys):
    synth = make_case(
        rng=np.random.default_rng(0),
        case_id="BraTS2021_00000",
        template="phantom",
        shape=(16, 16, 8),
    )
    write_layout(synth, tmp_path / "raw", layout="brats2020")
    assert main(["prepare", str(tmp_path / "raw"), "-o", str(tmp_path / "c"), "--folds", "0"]) == 0
    assert (
        main(
            [
                "prepare",
                str(tmp_path / "raw"),
                "-o",
                str(tmp_path / "c"),
                "--folds",
                "0",
                "--margin",
                "5",
            ]
        )
        == 2
    )
    assert "other settings" in capsys.readouterr().err


def test_same_subject_under_two_namings_is_one_patient(tmp_path):
    assert (
        patient_of(
            CaseRef("BraTS-GLI-00002-000", "brats2023", tmp_path, patient="BraTS-GLI-00002-000")
        )
        == "BraTS2021_00002"
    )
    assert (
        patient_of(CaseRef("volume_7_slice_64", "kaggle-h5", tmp_path, patient="volume_7"))
        == "BraTS20_Training_007"
    )
    assert stratum_of("TCGA_CS_4941_19960909") == "CS"
    assert stratum_of("BraTS2021_00000") == "2021"
    assert stratum_of("Brats18_TCIA02_135_1") == "TCIA"
    assert stratum_of("BraTS19_CBICA_ABM_1") == "CBICA"
    assert stratum_of("Brats18_2013_11_1") == "2013"
    assert stratum_of("BraTS20_Training_001") == ""


def test_cache_reader_checks_what_it_reads(tmp_path):
    assert not is_cache(tmp_path)
    with pytest.raises(FileNotFoundError, match="gliomaseg prepare"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": CACHE_FORMAT + 1, "cases": []}))
    assert is_cache(tmp_path)
    with pytest.raises(ValueError, match="prepare it again"):
        load_index(tmp_path)
    folder = case_dir(tmp_path, "c1")
    assert folder == tmp_path / "cases" / "c1"
    folder.mkdir(parents=True)
    (folder / "case.json").write_text(json.dumps({"case_id": "c1"}))
    np.save(folder / "image.npy", np.zeros((2, 1, 3, 3), np.float16))
    image, label, meta = open_case(tmp_path, "c1")
    assert image.shape == (2, 1, 3, 3) and label is None and meta == {"case_id": "c1"}
