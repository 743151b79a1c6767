"""Discovery never guesses from words in an id, keeps ids unique, and stays inside case folders.

Hostile-user cases of issue 12: ids holding ``label``/``mask``/``gt``; loose outputs or ``.h5``
files beside case folders; one case id in two folders; layout configs pointing outside the
case folder; a single file passed as a case. Each is checked through :func:`discover` and
through ``main([...])``, with exit codes, one-line messages and inputs left unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.core.errors import InputError
from gliomaseg.io.caseref import LayoutConfig
from gliomaseg.io.layouts import discover, discover_all, find_cases
from gliomaseg.io.naming import classify, naming_convention
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import make_case

#: The bundled model needs at least 32 x 32 in-plane (its bottleneck is 1/16 of that).
SHAPE = (32, 32, 6)


def _case(root: Path, case_id: str, *, seed: int = 0, layout: str = "brats2020") -> Path:
    synth = make_case(
        rng=np.random.default_rng(seed), case_id=case_id, template="phantom", shape=SHAPE
    )
    return write_layout(synth, root, layout=layout)


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash (or link target) of everything under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("gliomaseg: error:")]


def _segment(*args: str) -> int:
    return main(["segment", *args, "--model", "brats", "--device", "cpu", "--no-progress"])


# --------------------------------------------------------------------------- words in ids


@pytest.mark.parametrize("case_id", ["Label_001", "mask_002", "GT_003", "seg_t1_mask_004"])
def test_ids_may_hold_role_words(tmp_path, case_id):
    folder = _case(tmp_path / "data", case_id)
    for where in (folder, tmp_path / "data"):
        refs, bad = discover(where)
        assert bad == []
        assert [(r.case_id, r.layout) for r in refs] == [(case_id, "brats2020")]
        assert list(refs[0].images) == ["flair", "t1", "t1ce", "t2"]
        assert refs[0].label == folder / f"{case_id}_seg.nii.gz"


def test_role_comes_from_the_end_of_the_name_only():
    role = classify(Path("Label_001_flair.nii.gz"))
    assert (role.kind, role.modality, role.prefix) == ("image", "flair", "Label_001")
    assert classify(Path("Label_001_seg.nii.gz")).kind == "label"
    assert classify(Path("TCGA-DU-7294_fla_bet.nii.gz")).modality == "flair"
    assert classify(Path("BRATS_HG0005_T1C_slice95.nii.gz")).modality == "t1ce"
    assert classify(Path("Flair_subtrMeanDivStd.nii.gz")).modality == "flair"
    assert classify(Path("mask_flair_notes.nii.gz")).kind == "unknown"
    # An id holding a layout's marker word does not switch the layout (or its label scheme).
    names = [f"atropos_otmulticlass_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2", "seg")]
    roles = {Path(n): classify(Path(n)) for n in names}
    assert naming_convention(roles) == ("brats2020", "brats2020")


def test_inspect_and_segment_a_case_called_label(tmp_path, capsys):
    folder = _case(tmp_path / "data", "Label_001")
    before = _snapshot(tmp_path / "data")
    assert main(["inspect", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["case_id"] for c in report["cases"]] == ["Label_001"]
    assert report["errors"] == []
    assert _segment(str(folder), "-o", str(tmp_path / "out")) == 0
    assert (tmp_path / "out" / "Label_001_seg.nii.gz").exists()
    assert _snapshot(tmp_path / "data") == before


# --------------------------------------------------------------------------- loose files


def _segment_outputs(folder: Path, case_id: str, source: Path) -> None:
    """A folder as ``gliomaseg segment`` leaves it: a label map and a summary per case."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case_id}_seg.nii.gz").write_bytes(source.read_bytes())
    (folder / f"{case_id}_summary.json").write_text("{}")


def test_loose_label_maps_do_not_hide_case_subfolders(tmp_path):
    root = tmp_path / "data"
    a = _case(root, "BraTS2021_00001", seed=1)
    _case(root / "more", "BraTS2021_00002", seed=2)
    _segment_outputs(root, "BraTS2021_00001", a / "BraTS2021_00001_seg.nii.gz")
    refs, bad = discover(root)
    assert bad == []
    cases = [(r.case_id, r.layout) for r in refs if r.layout != "nifti-file"]
    assert cases == [("BraTS2021_00001", "brats2020"), ("BraTS2021_00002", "brats2020")]
    assert [r.path.name for r in refs if r.layout == "nifti-file"] == ["BraTS2021_00001_seg.nii.gz"]
    refs, bad = discover_all([root], cases_only=True)
    assert [r.case_id for r in refs] == ["BraTS2021_00001", "BraTS2021_00002"]


def test_an_h5_file_does_not_hide_case_subfolders(tmp_path):
    root = tmp_path / "data"
    synth = make_case(
        rng=np.random.default_rng(3), case_id="volume_7", template="phantom", shape=SHAPE
    )
    write_layout(synth, root, layout="h5", slices=[3])
    _case(root, "BraTS2021_00005", seed=5)
    refs, bad = discover(root)
    assert bad == []
    assert sorted((r.case_id, r.layout) for r in refs) == [
        ("BraTS2021_00005", "brats2020"),
        ("volume_7_slice_3", "kaggle-h5"),
    ]


def test_a_bad_case_deep_down_does_not_hide_its_neighbours(tmp_path):
    root = tmp_path / "data"
    _case(root / "batch1", "BraTS2021_00010", seed=10)
    broken = _case(root / "batch1", "BraTS2021_00011", seed=11)
    (broken / "BraTS2021_00011_t2.nii.gz").unlink()
    refs, bad = discover(root)
    assert [r.case_id for r in refs] == ["BraTS2021_00010"]
    assert [p for p, _ in bad] == [broken]
    assert "missing modality t2" in bad[0][1]


def test_a_folder_of_segment_outputs_is_not_a_case(tmp_path, capsys):
    source = _case(tmp_path / "data", "BraTS2021_00001")
    outputs = tmp_path / "outputs"
    _segment_outputs(outputs, "BraTS2021_00001", source / "BraTS2021_00001_seg.nii.gz")
    before = _snapshot(tmp_path)
    for command in (["prepare", str(outputs), "-o", str(tmp_path / "cache")],):
        assert main(command) == 2
        lines = _error_lines(capsys.readouterr().err)
        assert len(lines) == 1, lines
        assert str(outputs) in lines[0] and "belong to no case" in lines[0]
        assert "four modalities" in lines[0]
    assert _snapshot(tmp_path) == before
    refs, _ = discover(outputs)  # inspect still lists the label map, as one file
    assert [(r.case_id, r.layout) for r in refs] == [("BraTS2021_00001_seg", "nifti-file")]


@pytest.mark.parametrize("name", ["BraTS2021_00001_flair.nii.gz", "BraTS2021_00001_seg.nii.gz"])
def test_segment_of_a_single_file_is_a_one_line_error(tmp_path, capsys, name):
    source = _case(tmp_path / "data", "BraTS2021_00001") / name
    before = _snapshot(tmp_path / "data")
    out = tmp_path / "out"
    assert _segment(str(source), "-o", str(out)) == 2
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert str(source) in lines[0] and "single NIfTI file, not a case" in lines[0]
    assert "four modalities" in lines[0] and "gliomaseg-layout.json" in lines[0]
    assert not out.exists()
    assert _snapshot(tmp_path / "data") == before


# --------------------------------------------------------------------------- unique ids


@pytest.fixture
def twins(tmp_path) -> tuple[Path, Path]:
    """Two different patients stored under one case id, in folders a/ and b/."""
    a = _case(tmp_path / "data" / "a", "BraTS2021_00000", seed=1)
    b = _case(tmp_path / "data" / "b", "BraTS2021_00000", seed=2)
    return a, b


def _assert_collision(message: str, first: Path, second: Path) -> None:
    assert str(first) in message and str(second) in message, message
    assert "case id BraTS2021_00000 is already taken" in message


def test_one_id_in_two_folders_is_reported_through_discover(twins, tmp_path):
    a, b = twins
    for refs, bad in (discover(tmp_path / "data"), discover_all([a.parent, b.parent])):
        assert [r.path for r in refs] == [a]
        assert [p for p, _ in bad] == [b]
        _assert_collision(bad[0][1], a, b)
    with pytest.raises(InputError, match="already taken"):
        find_cases(tmp_path / "data")


def test_ids_differing_only_in_case_collide(tmp_path):
    a = _case(tmp_path / "a", "Case_01", seed=1)
    b = _case(tmp_path / "b", "CASE_01", seed=2)
    refs, bad = discover_all([a, b])
    assert [r.path for r in refs] == [a]
    assert [p for p, _ in bad] == [b]


def test_the_same_case_through_two_inputs_is_kept_once(tmp_path):
    a = _case(tmp_path / "data", "BraTS2021_00000")
    refs, bad = discover_all([a, tmp_path / "data", a])
    assert [r.path for r in refs] == [a] and bad == []


def test_segment_writes_one_output_per_patient_and_names_the_collision(twins, tmp_path, capsys):
    a, b = twins
    before = _snapshot(tmp_path / "data")
    out = tmp_path / "out"
    assert _segment(str(a.parent), str(b.parent), "-o", str(out)) == 2
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    _assert_collision(lines[0], a, b)
    assert sorted(p.name for p in out.iterdir()) == [
        ".gliomaseg-manifest.json",
        "BraTS2021_00000_seg.nii.gz",
        "BraTS2021_00000_summary.json",
    ]
    summary = json.loads((out / "BraTS2021_00000_summary.json").read_text())
    assert str(a) in json.dumps(summary)  # the first folder's patient, not the second's
    assert _snapshot(tmp_path / "data") == before


def test_prepare_and_inspect_report_the_second_patient(twins, tmp_path, capsys):
    a, b = twins
    before = _snapshot(tmp_path / "data")
    cache = tmp_path / "cache"
    assert main(["prepare", str(tmp_path / "data"), "-o", str(cache)]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    _assert_collision(lines[0], a, b)
    assert [p.name for p in (cache / "cases").iterdir()] == ["BraTS2021_00000"]
    assert main(["inspect", str(tmp_path / "data"), "--json"]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [c["case_id"] for c in report["cases"]] == ["BraTS2021_00000"]
    assert [e["path"] for e in report["errors"]] == [str(b)]
    assert _snapshot(tmp_path / "data") == before


# --------------------------------------------------------------------------- layout configs


def _config_case(root: Path) -> Path:
    """A case folder with arbitrary names (A..D) and a sibling folder Other/ with one image."""
    folder = _case(root, "Subject_1")
    for m, name in zip(("flair", "t1", "t1ce", "t2"), "ABCD", strict=True):
        (folder / f"Subject_1_{m}.nii.gz").rename(folder / f"{name}.nii.gz")
    (folder / "Subject_1_seg.nii.gz").rename(folder / "truth.nii.gz")
    (root / "Other").mkdir()
    (root / "Other" / "X.nii.gz").write_bytes((folder / "A.nii.gz").read_bytes())
    return folder


def _write_config(folder: Path, **patterns: str) -> Path:
    modalities = {"flair": "A.nii.gz", "t1": "B.nii.gz", "t1ce": "C.nii.gz", "t2": "D.nii.gz"}
    label = patterns.pop("label", "truth.nii.gz")
    path = folder / "gliomaseg-layout.json"
    path.write_text(json.dumps({"modalities": {**modalities, **patterns}, "label": label}))
    return path


def test_a_config_inside_its_folder_still_works(tmp_path):
    folder = _config_case(tmp_path)
    _write_config(folder)
    (ref,) = find_cases(folder)
    assert (ref.layout, ref.images["flair"], ref.label) == (
        "config",
        folder / "A.nii.gz",
        folder / "truth.nii.gz",
    )


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ({"flair": "../Other/*.nii.gz"}, "points outside the case folder"),
        ({"t2": "/etc/hostname"}, "points outside the case folder"),
        ({"label": "sub/../../Other/X.nii.gz"}, "points outside the case folder"),
        ({"t1": ""}, "not a file glob"),
    ],
)
def test_config_patterns_outside_the_case_folder_are_refused(tmp_path, capsys, patterns, expected):
    folder = _config_case(tmp_path)
    config = _write_config(folder, **patterns)
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match=re.escape(str(config))):
        discover(folder)
    assert main(["inspect", str(folder)]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert str(config) in lines[0] and expected in lines[0]
    assert "relative to the case folder" in lines[0]
    # --layout-config with the same file is refused the same way, before anything is read.
    assert main(["inspect", str(tmp_path), "--layout-config", str(config)]) == 2
    assert expected in _error_lines(capsys.readouterr().err)[0]
    assert _snapshot(tmp_path) == before


def test_config_match_that_links_outside_the_case_folder_is_refused(tmp_path, capsys):
    folder = _config_case(tmp_path)
    (folder / "A.nii.gz").unlink()
    (folder / "A.nii.gz").symlink_to(tmp_path / "Other" / "X.nii.gz")
    config = _write_config(folder)
    with pytest.raises(InputError, match=r"resolves to .* outside the case folder"):
        discover(folder)
    assert main(["inspect", str(folder)]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert str(config) in line and "copy the file into the case folder" in line


def test_config_built_in_python_is_checked_too():
    with pytest.raises(InputError, match="outside the case folder"):
        LayoutConfig(modalities={"flair": "/etc/hostname"})
    with pytest.raises(InputError, match="outside the case folder"):
        LayoutConfig(modalities={"flair": "a.nii.gz"}, brain_mask="..\\mask.nii.gz")
