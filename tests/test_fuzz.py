"""Fuzz suite: bad inputs and faults against every command, one promise for all.

Each kind of damage is applied to one of two small synthetic BraTS cases (the other stays
good) and each command is run on the pair. The promise, checked for every combination:

* exit code 2, and every line on stderr is a ``gliomaseg:`` line or a progress bar (no
  traceback);
* exactly one ``gliomaseg: error:`` line names the damaged case or file;
* the inputs are unchanged, byte for byte (checksums of every file);
* the good case is still processed by the batch commands;
* nothing is written for the damaged case (no partial output).

Format-level damage in depth is in ``test_integrity.py``; the three commands that share one
reader (inspect, prepare, segment) see more kinds in ``test_bad_input.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import make_case

GOOD, BAD = "BraTS2021_00001", "BraTS2021_00002"


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _gunzipped(path: Path) -> bytearray:
    return bytearray(gzip.decompress(path.read_bytes()))


# --------------------------------------------------------------------- kinds of damage
# Each takes the bad case's folder and returns the name the error line must contain.


def _flipped_byte(d: Path) -> str:
    p = d / f"{BAD}_t1.nii.gz"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the deflate stream: CRC (or inflate) must fail
    p.write_bytes(bytes(raw))
    return p.name


def _zero_bytes(d: Path) -> str:
    p = d / f"{BAD}_flair.nii.gz"
    p.write_bytes(b"")
    return p.name


def _not_nifti(d: Path) -> str:
    p = d / f"{BAD}_t2.nii.gz"
    p.write_bytes(gzip.compress(b"<html>not an image</html>" * 20))
    return p.name


def _huge_header(d: Path) -> str:
    p = d / f"{BAD}_t1ce.nii.gz"
    raw = _gunzipped(p)
    struct.pack_into("<hhhh", raw, 40, 3, 20000, 20000, 20000)  # dim[0..3]
    p.write_bytes(gzip.compress(bytes(raw)))
    return p.name


def _singular_affine(d: Path) -> str:
    p = d / f"{BAD}_flair.nii.gz"
    raw = _gunzipped(p)
    struct.pack_into("<hh", raw, 252, 0, 1)  # qform_code 0, sform_code 1
    struct.pack_into("<4f", raw, 280, 0.0, 0.0, 0.0, 1.0)  # srow_x: a zero row
    p.write_bytes(gzip.compress(bytes(raw)))
    return p.name


def _folder_for_a_file(d: Path) -> str:
    p = d / f"{BAD}_t2.nii.gz"
    p.unlink()
    p.mkdir()
    return BAD


def _dangling_symlink(d: Path) -> str:
    p = d / f"{BAD}_t1.nii.gz"
    p.unlink()
    p.symlink_to(d / "nowhere.nii.gz")
    return BAD


def _unreadable_label(d: Path) -> str:
    p = d / f"{BAD}_seg.nii.gz"
    p.write_bytes(p.read_bytes()[:60])
    return p.name


KINDS: dict[str, Callable[[Path], str]] = {
    "flipped byte in gzip": _flipped_byte,
    "zero-byte file": _zero_bytes,
    "not a NIfTI": _not_nifti,
    "header claims 20000^3 voxels": _huge_header,
    "singular affine": _singular_affine,
    "folder where a file should be": _folder_for_a_file,
    "dangling symlink": _dangling_symlink,
    "truncated label": _unreadable_label,
}

COMMANDS = ("inspect", "prepare", "segment", "evaluate", "explain", "train")

# Damage a command never reads: segment ignores the label; evaluate reads only the label.
NOT_READ = {
    ("segment", "truncated label"),
    *(("evaluate", k) for k in KINDS if k != "truncated label"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Two good cases and, for evaluate, their labels as predictions."""
    root = tmp_path_factory.mktemp("pristine")
    for i, cid in enumerate((GOOD, BAD)):
        synth = make_case(
            rng=np.random.default_rng(i), case_id=cid, template="phantom", shape=(20, 20, 12)
        )
        folder = write_layout(synth, root / "data", layout="brats2020")
        (root / "pred").mkdir(exist_ok=True)
        shutil.copy(folder / f"{cid}_seg.nii.gz", root / "pred" / f"{cid}_seg.nii.gz")
    return root


def _args(command: str, root: Path, model: Path) -> list[str]:
    data, out = str(root / "data"), str(root / "out")
    return {
        "inspect": ["inspect", data],
        "prepare": ["prepare", data, "-o", out],
        "segment": ["segment", data, "-o", out, "--model", str(model), "--no-progress"],
        "evaluate": ["evaluate", "--pred", str(root / "pred"), "--gt", data, "-o", out],
        "explain": ["explain", data, "-o", out, "--no-mesh"],
        "train": [
            *("train", "--preset", "unet-small-ce", "--data", str(root / "data" / BAD)),
            *("-o", out, "--epochs", "1", "--steps-per-epoch", "1", "--no-progress"),
        ],
    }[command]


def _assert_promise(err: str, name: str) -> None:
    # Progress bars (rich draws them on stderr) are the only other lines allowed.
    lines = [ln for ln in err.splitlines() if ln.strip() and "━" not in ln]
    assert "Traceback" not in err, err
    assert all(ln.startswith("gliomaseg:") for ln in lines), err
    errors = [ln for ln in lines if ln.startswith("gliomaseg: error:")]
    assert len(errors) == 1, err
    assert name in errors[0], errors[0]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_keeps_the_promise(pristine, tmp_path, tiny_run, capsys, command, kind):
    if (command, kind) in NOT_READ:
        pytest.skip(f"{command} does not read the damaged file")
    root = tmp_path / "w"
    shutil.copytree(pristine, root, symlinks=True)
    name = KINDS[kind](root / "data" / BAD)
    before = _checksums(root)
    capsys.readouterr()
    code = main(_args(command, root, tiny_run / "checkpoints" / "best.pt"))
    err = capsys.readouterr().err
    assert code == 2, err
    _assert_promise(err, name)
    assert _checksums(root / "data") == {
        k[len("data/") :]: v for k, v in before.items() if k.startswith("data/")
    }
    assert _checksums(root / "pred") == {
        k[len("pred/") :]: v for k, v in before.items() if k.startswith("pred/")
    }
    out = root / "out"
    written = [p.name for p in out.rglob("*")] if out.exists() else []
    assert not [n for n in written if n.startswith(BAD)], written  # nothing for the bad case
    assert not [n for n in written if n.startswith(".gstmp-")], written  # no temporaries
    if command == "train":
        assert not out.exists()  # no run folder for a run that never started
    elif command == "prepare":
        assert (out / "cases" / GOOD / "image.npy").exists()
        assert json.loads((out / "index.json").read_text())["cases"][0]["case_id"] == GOOD
    elif command == "segment":
        assert (out / f"{GOOD}_seg.nii.gz").exists()
    elif command == "explain":
        assert (out / f"{GOOD}_explanation.json").exists()
    elif command == "evaluate":
        summary = json.loads((out / "summary.json").read_text())
        assert summary["cases"] == [GOOD] and [e["case_id"] for e in summary["errors"]] == [BAD]


def test_report_on_a_damaged_segmentation(pristine, tmp_path, tiny_run, capsys):
    root = tmp_path / "w"
    shutil.copytree(pristine, root, symlinks=True)
    model = tiny_run / "checkpoints" / "best.pt"
    seg = root / "seg"
    args = ["segment", str(root / "data"), "-o", str(seg), "--model", str(model), "--no-progress"]
    assert main(args) == 0
    damaged = seg / f"{BAD}_seg.nii.gz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    before = _checksums(seg)
    capsys.readouterr()
    code = main(["report", str(seg), "--case", BAD])
    err = capsys.readouterr().err
    assert code == 2
    _assert_promise(err, damaged.name)
    assert {k: v for k, v in _checksums(seg).items() if not k.endswith(".html")} == before
    assert not list(seg.glob(f"{BAD}*.html"))


@pytest.mark.parametrize(
    "pattern", ["../other/*_flair.nii.gz", "/etc/hostname", "sub/../../x_flair.nii.gz"]
)
def test_layout_config_cannot_read_outside_its_case(pristine, tmp_path, capsys, pattern):
    root = tmp_path / "w"
    shutil.copytree(pristine, root, symlinks=True)
    case = root / "data" / GOOD
    config = case / "gliomaseg-layout.json"
    modalities = {m: f"*_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")}
    modalities["flair"] = pattern
    config.write_text(json.dumps({"modalities": modalities, "label": "*_seg.nii.gz"}))
    before = _checksums(root)
    assert main(["inspect", str(case)]) == 2
    _assert_promise(capsys.readouterr().err, "gliomaseg-layout.json")
    assert _checksums(root) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores modes")
def test_unreadable_case_file(pristine, tmp_path, capsys):
    root = tmp_path / "w"
    shutil.copytree(pristine, root, symlinks=True)
    p = root / "data" / BAD / f"{BAD}_t1.nii.gz"
    p.chmod(0)
    try:
        assert main(["inspect", str(root / "data")]) == 2
    finally:
        p.chmod(0o644)
    _assert_promise(capsys.readouterr().err, p.name)
