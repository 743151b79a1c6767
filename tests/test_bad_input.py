"""Bad input: one line naming the file and the fix, exit code 2, nothing written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import make_case

CASE_ID = "BraTS2021_00042"


@pytest.fixture
def case_dir(tmp_path) -> Path:
    synth = make_case(
        rng=np.random.default_rng(0), case_id=CASE_ID, template="phantom", shape=(16, 18, 14)
    )
    return write_layout(synth, tmp_path / "data", layout="brats2020")


def _file(folder: Path, role: str) -> Path:
    return folder / f"{CASE_ID}_{role}.nii.gz"


def _rewrite(
    path: Path, edit: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
) -> None:
    img = nib.load(path)
    data, affine = edit(np.asarray(img.dataobj).copy(), img.affine.copy())
    nib.save(nib.Nifti1Image(data, affine), path)


def _missing_modality(d: Path) -> str:
    _file(d, "t1ce").unlink()
    return f"{CASE_ID}_t1ce.nii.gz"


def _extra_file(d: Path) -> str:
    nib.save(
        nib.Nifti1Image(np.ones((16, 18, 14), np.float32), np.eye(4)), d / "notes_backup.nii.gz"
    )
    return "notes_backup.nii.gz"


def _shape_mismatch(d: Path) -> str:
    _rewrite(_file(d, "t2"), lambda a, aff: (a[:-1], aff))
    return f"{CASE_ID}_t2.nii.gz"


def _affine_mismatch(d: Path) -> str:
    def shift(a: np.ndarray, aff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        aff[0, 3] += 5.0
        return a, aff

    _rewrite(_file(d, "t1"), shift)
    return f"{CASE_ID}_t1.nii.gz"


def _truncated(d: Path) -> str:
    p = _file(d, "flair")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p.name


def _corrupt(d: Path) -> str:
    p = _file(d, "t2")
    p.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    return p.name


def _nan_voxel(d: Path) -> str:
    def poison(a: np.ndarray, aff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = a.astype(np.float32)
        a[3, 4, 5] = np.nan
        return a, aff

    _rewrite(_file(d, "t1"), poison)
    return f"{CASE_ID}_t1.nii.gz"


def _inf_voxel(d: Path) -> str:
    def poison(a: np.ndarray, aff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = a.astype(np.float32)
        a[0, 0, 0] = np.inf
        return a, aff

    _rewrite(_file(d, "flair"), poison)
    return f"{CASE_ID}_flair.nii.gz"


def _all_zero(d: Path) -> str:
    _rewrite(_file(d, "t1ce"), lambda a, aff: (np.zeros_like(a), aff))
    return f"{CASE_ID}_t1ce.nii.gz"


def _unknown_label(d: Path) -> str:
    def relabel(a: np.ndarray, aff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = a.copy()
        a[a == 2] = 7
        return a, aff

    _rewrite(_file(d, "seg"), relabel)
    return f"{CASE_ID}_seg.nii.gz"


BREAKERS = {
    "missing modality": (_missing_modality, "missing modality t1ce"),
    "extra unknown file": (_extra_file, "unknown file"),
    "shape mismatch": (_shape_mismatch, "shape"),
    "affine mismatch": (_affine_mismatch, "affine differs"),
    "truncated nii.gz": (_truncated, "corrupt or truncated"),
    "corrupt nii.gz": (_corrupt, "corrupt or truncated"),
    "NaN voxel": (_nan_voxel, "NaN/Inf"),
    "Inf voxel": (_inf_voxel, "NaN/Inf"),
    "all-zero modality": (_all_zero, "every voxel is zero"),
    "unknown label values": (_unknown_label, r"unknown label value\(s\) \[7\]"),
}


def _assert_one_line_error(err: str, name: str, pattern: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("gliomaseg: error:")]
    assert len(lines) == 1, err
    assert name in lines[0]
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("kind", sorted(BREAKERS))
@pytest.mark.parametrize("command", ["inspect", "prepare", "segment"])
def test_bad_case_gives_one_line_error_exit_2_and_writes_nothing(
    case_dir, tmp_path, capsys, kind, command, request
):
    if command == "segment" and kind == "unknown label values":
        pytest.skip("segment does not read the reference label")
    breaker, pattern = BREAKERS[kind]
    name = breaker(case_dir)
    out = tmp_path / "out"
    args = [command, str(case_dir)]
    if command == "prepare":
        args += ["-o", str(out)]
    if command == "segment":
        model = request.getfixturevalue("tiny_run") / "checkpoints" / "best.pt"
        args += ["-o", str(out), "--model", str(model), "--no-progress"]
    assert main(args) == 2
    _assert_one_line_error(capsys.readouterr().err, name, pattern)
    assert not out.exists() or not any(out.iterdir())


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    _assert_one_line_error(capsys.readouterr().err, "empty", "no cases found")


def test_path_that_does_not_exist(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nope"), "-o", str(tmp_path / "c")]) == 2
    _assert_one_line_error(capsys.readouterr().err, "nope", "no such file")
    assert not (tmp_path / "c").exists()


def test_tiff_stack_with_a_missing_mask(tmp_path, capsys):
    synth = make_case(
        rng=np.random.default_rng(1),
        case_id="TCGA_CS_4941_19960909",
        template="phantom",
        shape=(16, 16, 6),
    )
    folder = write_layout(synth, tmp_path, layout="lgg-tiff")
    (folder / "TCGA_CS_4941_19960909_3_mask.tif").unlink()
    out = tmp_path / "cache"
    assert main(["prepare", str(folder), "-o", str(out)]) == 2
    _assert_one_line_error(capsys.readouterr().err, "TCGA_CS_4941_19960909_3.tif", "no mask")
    assert not out.exists()


@pytest.mark.parametrize("breakage", ["corrupt file", "unknown file", "missing modality"])
def test_one_bad_case_does_not_stop_the_batch(tmp_path, capsys, breakage, request):
    for i in range(3):
        synth = make_case(
            rng=np.random.default_rng(i),
            case_id=f"BraTS2021_{i:05d}",
            template="phantom",
            shape=(16, 16, 16),
        )
        write_layout(synth, tmp_path / "data", layout="brats2020")
    folder = tmp_path / "data" / "BraTS2021_00001"
    if breakage == "corrupt file":  # found, fails when read
        (folder / "BraTS2021_00001_t2.nii.gz").write_bytes(b"garbage")
    elif breakage == "unknown file":  # fails when the folders are searched
        (folder / "scratch.nii.gz").write_bytes((folder / "BraTS2021_00001_t2.nii.gz").read_bytes())
    else:
        (folder / "BraTS2021_00001_t2.nii.gz").unlink()
    out = tmp_path / "cache"
    assert main(["prepare", str(tmp_path / "data"), "-o", str(out)]) == 2
    assert "BraTS2021_00001" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "cases").iterdir()) == [
        "BraTS2021_00000",
        "BraTS2021_00002",
    ]
    assert main(["inspect", str(tmp_path / "data"), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [c["case_id"] for c in report["cases"]] == ["BraTS2021_00000", "BraTS2021_00002"]
    assert len(report["errors"]) == 1
    model = request.getfixturevalue("tiny_run") / "checkpoints" / "best.pt"
    seg = tmp_path / "seg"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "data"),
                "-o",
                str(seg),
                "--model",
                str(model),
                "--no-progress",
            ]
        )
        == 2
    )
    assert sorted(p.name for p in seg.glob("*_seg.nii.gz")) == [
        "BraTS2021_00000_seg.nii.gz",
        "BraTS2021_00002_seg.nii.gz",
    ]
