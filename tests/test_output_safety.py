"""The user's data are read-only to gliomaseg: output folders, the manifest, temp files, batches.

Each test builds tiny synthetic cases, runs a command through ``main([...])`` and checks the
promise: exit code, one error line naming the path, no traceback, inputs unchanged
(checksums of every file), no partial output.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.atomic import TMP_PREFIX, atomic_path, remove_orphans, write_text_atomic
from gliomaseg.io.outdir import MANIFEST_NAME, OutputFolder, check_location
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import make_case


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _case(root: Path, case_id: str, seed: int = 0) -> Path:
    synth = make_case(
        rng=np.random.default_rng(seed),
        case_id=case_id,
        template="phantom",
        shape=(24, 24, 12),
        tumour_radius_mm=6.0,
    )
    return write_layout(synth, root, layout="brats2020")


def _error_lines(err: str) -> list[str]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    return lines


@pytest.fixture
def dataset(tmp_path) -> Path:
    data = tmp_path / "DATA" / "cases"
    for i in range(2):
        _case(data, f"Case_{i:03d}", seed=i)
    return data


@pytest.fixture
def model_path(tiny_run) -> Path:
    return tiny_run / "checkpoints" / "best.pt"


# --------------------------------------------------------------------- where outputs may go


def test_prepare_into_the_parent_of_its_input_is_refused_and_deletes_nothing(dataset, capsys):
    """The reported data loss: ``prepare DATA/cases -o DATA`` replaced the patients' folders."""
    parent = dataset.parent
    before = _checksums(parent)
    assert main(["prepare", str(dataset), "-o", str(parent)]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert str(parent) in line and "input" in line
    assert _checksums(parent) == before


@pytest.mark.parametrize("where", ["same", "inside"])
def test_segment_into_the_case_folder_is_refused(dataset, model_path, capsys, where):
    """``segment CASE -o CASE`` wrote <id>_seg.nii.gz over the manual label."""
    case = dataset / "Case_000"
    out = case if where == "same" else case / "predictions"
    before = _checksums(dataset)
    code = main(["segment", str(case), "-o", str(out), "--model", str(model_path), "--no-progress"])
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert str(out) in line
    assert _checksums(dataset) == before
    assert not (case / "predictions").exists()


def test_segment_into_the_dataset_folder_that_holds_the_cases_is_refused(
    dataset, model_path, capsys
):
    before = _checksums(dataset)
    code = main(
        ["segment", str(dataset), "-o", str(dataset), "--model", str(model_path), "--no-progress"]
    )
    assert code == 2
    assert len(_error_lines(capsys.readouterr().err)) == 1
    assert _checksums(dataset) == before


@pytest.mark.parametrize("command", ["segment", "prepare", "evaluate", "explain"])
def test_output_that_is_an_existing_file_is_one_line(
    dataset, tmp_path, model_path, capsys, command
):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    args = {
        "segment": ["segment", str(dataset), "--model", str(model_path), "--no-progress"],
        "prepare": ["prepare", str(dataset)],
        "evaluate": ["evaluate", "--pred", str(dataset), "--gt", str(dataset)],
        "explain": ["explain", str(dataset)],
    }[command]
    assert main([*args, "-o", str(target)]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert str(target) in line
    assert target.read_text() == "mine"


def test_evaluate_may_write_inside_the_predictions_folder_but_not_onto_the_references(
    dataset, tmp_path
):
    check_location(tmp_path / "pred" / "eval", data_paths=[tmp_path / "pred", dataset])
    with pytest.raises(ValueError, match="holds the input"):
        check_location(dataset.parent, data_paths=[tmp_path / "pred", dataset])


# --------------------------------------------------------------------- the manifest


def test_segment_never_replaces_a_file_it_did_not_write(dataset, tmp_path, model_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "Case_000_seg.nii.gz"
    foreign.write_bytes(b"a manual label kept here by the user")
    for extra in ([], ["--overwrite"]):
        code = main(
            [
                "segment",
                str(dataset),
                "-o",
                str(out),
                "--model",
                str(model_path),
                "--no-progress",
                *extra,
            ]
        )
        assert code == 2  # Case_000 failed, Case_001 went on
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert "not written by gliomaseg" in err and "Case_000_seg.nii.gz" in err
        assert foreign.read_bytes() == b"a manual label kept here by the user"
        assert (out / "Case_001_seg.nii.gz").exists()


def test_segment_skips_its_own_finished_cases_and_overwrite_replaces_them(
    dataset, tmp_path, model_path, capsys
):
    out = tmp_path / "out"
    args = ["segment", str(dataset), "-o", str(out), "--model", str(model_path), "--no-progress"]
    assert main(args) == 0
    written = sorted(p.name for p in out.iterdir())
    assert MANIFEST_NAME in written
    first = (out / "Case_000_summary.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "Case_000_summary.json").stat().st_mtime_ns == first  # skipped
    assert main([*args, "--overwrite"]) == 0
    assert (out / "Case_000_summary.json").stat().st_mtime_ns != first  # replaced: ours
    assert sorted(p.name for p in out.iterdir()) == written


def test_prepare_never_replaces_a_case_folder_it_did_not_write(dataset, tmp_path, capsys):
    cache = tmp_path / "cache"
    theirs = cache / "cases" / "Case_000"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("the user's")
    assert main(["prepare", str(dataset), "-o", str(cache), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not written by gliomaseg" in err and "Traceback" not in err
    assert (theirs / "notes.txt").read_text() == "the user's"
    assert (cache / "cases" / "Case_001" / "image.npy").exists()  # the other case went on


def test_manifest_is_shared_by_writers_and_names_only_what_was_written(tmp_path):
    a = OutputFolder(tmp_path / "o")
    b = OutputFolder(tmp_path / "o")
    a.record(tmp_path / "o" / "x.json")
    b.record(tmp_path / "o" / "y.json")
    assert a.written() == {"x.json", "y.json"}
    assert a.owns(tmp_path / "o" / "y.json") and not a.owns(tmp_path / "o" / "z.json")


# --------------------------------------------------------------------- files and folders


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644


def test_temporary_names_are_never_longer_than_a_long_final_name(tmp_path):
    name = "C" * 240 + "_seg.nii.gz"  # 251 characters: the limit is 255
    with atomic_path(tmp_path / name) as tmp:
        assert tmp.name.startswith(TMP_PREFIX) and tmp.name.endswith(".nii.gz")
        assert len(tmp.name) < 40
        tmp.write_bytes(b"x")
    assert (tmp_path / name).read_bytes() == b"x"


def _dead_pid() -> int:
    pid = 2**22 - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_orphaned_temporary_files_are_removed_but_live_ones_kept(tmp_path):
    orphan = tmp_path / f"{TMP_PREFIX}{_dead_pid()}-abc.nii.gz"
    orphan.write_bytes(b"half")
    orphan_dir = tmp_path / f"{TMP_PREFIX}{_dead_pid()}-def"
    orphan_dir.mkdir()
    live = tmp_path / f"{TMP_PREFIX}{os.getpid()}-ghi.json"
    live.write_bytes(b"in progress")
    user = tmp_path / ".gstmp-notes.txt"  # not one of ours: no pid
    user.write_bytes(b"keep")
    assert sorted(remove_orphans(tmp_path)) == sorted([orphan, orphan_dir])
    assert live.exists() and user.exists()


def test_segment_after_a_kill_cleans_the_orphans(dataset, tmp_path, model_path):
    out = tmp_path / "out"
    out.mkdir()
    orphan = out / f"{TMP_PREFIX}{_dead_pid()}-xyz.nii.gz"
    orphan.write_bytes(b"half-written")
    assert (
        main(["segment", str(dataset), "-o", str(out), "--model", str(model_path), "--no-progress"])
        == 0
    )
    assert not orphan.exists()
    assert not list(out.glob(f"{TMP_PREFIX}*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_folder_is_one_line(dataset, tmp_path, model_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        code = main(
            ["segment", str(dataset), "-o", str(out), "--model", str(model_path), "--no-progress"]
        )
    finally:
        out.chmod(0o700)
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "not writable" in line


# --------------------------------------------------------------------- batches


def test_a_case_raising_anything_does_not_stop_the_batch(
    dataset, tmp_path, model_path, capsys, monkeypatch
):
    from gliomaseg.segment import batch as segment_module

    real = segment_module.read_case

    def flaky(ref, **kwargs):
        if ref.case_id == "Case_000":
            raise RuntimeError("boom")
        return real(ref, **kwargs)

    monkeypatch.setattr(segment_module, "read_case", flaky)
    out = tmp_path / "out"
    code = main(
        ["segment", str(dataset), "-o", str(out), "--model", str(model_path), "--no-progress"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "unexpected RuntimeError: boom" in err and "--debug" in err
    assert (out / "Case_001_seg.nii.gz").exists()
    assert not (out / "Case_000_seg.nii.gz").exists()


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from gliomaseg.cli import inspect as inspect_cmd

    def broken(args):
        raise KeyError("internal")

    monkeypatch.setattr(inspect_cmd, "run", broken)
    assert main(["inspect", str(tmp_path)]) == 2
    with pytest.raises(KeyError):
        main(["--debug", "inspect", str(tmp_path)])


def test_lgg_predictions_beside_the_slices_do_not_make_the_patient_unreadable(tmp_path):
    """Older versions could write ``<slice>_pred.tif`` into a patient folder."""
    import tifffile

    from gliomaseg.io.layouts import find_cases, read_case

    synth = make_case(
        rng=np.random.default_rng(3),
        case_id="TCGA_CS_4941_19960909",
        template="phantom",
        shape=(16, 16, 4),
    )
    folder = write_layout(synth, tmp_path, layout="lgg-tiff")
    tifffile.imwrite(folder / "TCGA_CS_4941_19960909_2_pred.tif", np.zeros((16, 16), np.uint8))
    (ref,) = find_cases(folder)
    assert read_case(ref).shape[2] == 4


def test_read_only_output_folder_is_one_line_even_for_root(
    dataset, tmp_path, model_path, capsys, monkeypatch
):
    """Root ignores modes, so the permission check is simulated: the message is the point."""
    out = tmp_path / "ro"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == out else real_access(p, m))
    code = main(
        ["segment", str(dataset), "-o", str(out), "--model", str(model_path), "--no-progress"]
    )
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert str(out) in line and "not writable" in line
    assert list(out.iterdir()) == []


def test_disk_full_is_one_line_per_case_and_leaves_no_partial_file(
    dataset, tmp_path, model_path, capsys, monkeypatch
):
    import errno

    import gliomaseg.io.nifti as nifti_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))

    monkeypatch.setattr(nifti_module, "write_nifti", full)
    out = tmp_path / "out"
    code = main(
        ["segment", str(dataset), "-o", str(out), "--model", str(model_path), "--no-progress"]
    )
    assert code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in _error_lines(err) if ln.startswith("gliomaseg: error:")]
    assert len(lines) == 2 and all("no space left on the device" in ln for ln in lines)
    assert not list(out.glob("*_seg.nii.gz")) and not list(out.glob("*_summary.json"))
    assert not list(out.glob(f"{TMP_PREFIX}*"))
