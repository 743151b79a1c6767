"""A corrupt or forged input is an error naming the file, never a result, and never a big allocation.

Every file here is a small synthetic one written in ``tmp_path`` and then damaged in a known
place, so each test fails the same way every time.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from gliomaseg.cli.main import main
from gliomaseg.core.errors import InputError
from gliomaseg.core.targets import TARGETS
from gliomaseg.io import hdf5, limits, nifti, tiff
from gliomaseg.models import ModelConfig, build_model
from gliomaseg.models.checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

# NIfTI-1 header byte offsets (little endian, as nibabel writes on x86).
DIM, PIXDIM, QFORM_CODE, SFORM_CODE, SROW_X = 40, 76, 252, 254, 280
AFFINE = np.array([[-1.0, 0, 0, 10], [0, 1, 0, -5], [0, 0, 2, 3], [0, 0, 0, 1]])


def _nii_bytes(shape: tuple[int, ...] = (12, 10, 8), dtype: Any = np.int16) -> bytearray:
    """An uncompressed single-file NIfTI-1 of seeded noise (compresses poorly: no long runs)."""
    data = np.random.default_rng(0).integers(1, 1000, size=shape).astype(dtype)
    return bytearray(nib.Nifti1Image(data, AFFINE).to_bytes())


def _write(path: Path, raw: bytes) -> Path:
    path.write_bytes(gzip.compress(bytes(raw), mtime=0) if path.name.endswith(".gz") else raw)
    return path


def _good(tmp_path: Path, name: str = "img.nii.gz") -> Path:
    return _write(tmp_path / name, _nii_bytes())


def _raises(path: Path, match: str, reader: Any = nifti.read_image) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and "; " in message  # file; ... fix
    return info.value


def test_intact_files_read_back_exactly(tmp_path):
    raw = _nii_bytes()
    expected = np.asarray(nib.Nifti1Image.from_bytes(bytes(raw)).dataobj)
    for name in ("a.nii.gz", "a.nii"):
        data, affine = nifti.read_image(_write(tmp_path / name, raw))
        np.testing.assert_array_equal(data, expected.astype(np.float32))
        np.testing.assert_allclose(affine, AFFINE)
        label, _ = nifti.read_label(tmp_path / name)
        assert label.dtype == np.int16 and np.array_equal(label, expected)
        assert nifti.read_header(tmp_path / name).shape == (12, 10, 8)


# ------------------------------------------------------------------------------ gzip stream


def test_flipped_byte_in_the_compressed_payload(tmp_path):
    path = _good(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the deflate data: header and trailer untouched
    path.write_bytes(blob)
    _raises(path, "not a readable NIfTI file .*(CRC|invalid|Error)")
    _raises(path, "not a readable NIfTI file", nifti.read_label)


def test_truncated_gzip(tmp_path):
    path = _good(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    _raises(path, "gzip stream ended early")


def test_bad_crc_in_the_trailer(tmp_path):
    path = _good(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-8] ^= 0x01  # CRC-32 is the trailer's first 4 bytes
    path.write_bytes(blob)
    _raises(path, "CRC check failed")


def test_bad_length_in_the_trailer(tmp_path):
    path = _good(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01  # ISIZE: the trailer's last 4 bytes
    path.write_bytes(blob)
    _raises(path, "Incorrect length")


def test_trailing_garbage_after_the_gzip_stream(tmp_path):
    path = _good(tmp_path)
    path.write_bytes(path.read_bytes() + b"garbage")
    _raises(path, "Not a gzipped file")


def test_more_data_than_the_header_declares(tmp_path):
    path = _good(tmp_path)
    path.write_bytes(path.read_bytes() + gzip.compress(b"\x01" * 100))  # a valid 2nd member
    _raises(path, "holds more than the .* bytes its header declares")


def test_uncompressed_file_cut_short(tmp_path):
    path = _write(tmp_path / "img.nii", _nii_bytes()[:-10])
    _raises(path, "header declares")


def test_gzip_bomb_stops_while_streaming(tmp_path):
    """A small header followed by 64 MiB of zeros (64 KiB on disk) never gets into memory."""
    raw = _nii_bytes((8, 8, 8), np.uint8)
    path = tmp_path / "bomb.nii.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(raw)
        for _ in range(64):
            f.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        _raises(path, "holds more than the .* bytes its header declares")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_size_cap_checked_from_the_header(tmp_path, monkeypatch):
    path = _good(tmp_path)
    nifti.read_image(path)
    monkeypatch.setattr(limits, "MAX_NIFTI_BYTES", 1000)
    _raises(path, "over the .* limit .*MAX_NIFTI_BYTES")
    _raises(path, "MAX_NIFTI_BYTES", nifti.read_header)


# ------------------------------------------------------------------------------ header


def _patched(tmp_path: Path, *patches: tuple[str, int, tuple[Any, ...]]) -> Path:
    """A valid file with ``struct.pack_into(fmt, header, offset, *values)`` applied for each patch."""
    raw = _nii_bytes()
    for fmt, offset, values in patches:
        struct.pack_into(fmt, raw, offset, *values)
    return _write(tmp_path / "p.nii.gz", raw)


SFORM_ONLY = ("<hh", QFORM_CODE, (0, 1))


def test_header_claiming_20000_cubed_voxels_fails_before_allocating(tmp_path):
    path = _patched(tmp_path, ("<3h", DIM + 2, (20000, 20000, 20000)))
    tracemalloc.start()
    try:
        _raises(path, r"20000x20000x20000 int16 voxels \(14901\.2 GiB\), over the 4\.0 GiB")
        _raises(path, "20000x20000x20000", nifti.read_header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@pytest.mark.parametrize(
    ("patches", "match"),
    [
        ([("<h", DIM, (1,))], r"expected 2 to 5 dimensions"),
        ([("<h", DIM, (7,))], r"expected 2 to 5 dimensions"),
        ([("<h", DIM + 4, (0,))], r"expected 2 to 5 dimensions, each at least 1"),
        ([("<h", DIM + 4, (-3,))], r"invalid NIfTI dimensions|expected 2 to 5"),
        ([("<hh", 70, (32, 64))], r"complex64 is not supported"),  # datatype, bitpix
        ([("<hh", 70, (2, 8)), ("<h", 70, (255,))], r"invalid NIfTI"),  # unknown datatype
        (
            [("<f", PIXDIM + 4, (0.0,))],
            r"voxel size \(pixdim\) \[0\.0, 1\.0, 2\.0\] is not finite and non-zero",
        ),
        ([("<f", PIXDIM + 8, (float("nan"),))], r"voxel size \(pixdim\)"),
        ([SFORM_ONLY, ("<f", SROW_X, (np.nan,))], r"the sform .* is not finite"),
        ([SFORM_ONLY, ("<4f", SROW_X, (0, 0, 0, 10))], r"the sform .* is singular"),
        ([("<hhf", QFORM_CODE, (1, 0, np.nan))], r"qform .* not finite|invalid NIfTI orientation"),
        ([("<hhf", QFORM_CODE, (1, 0, 2.0))], r"invalid NIfTI orientation"),  # |quaternion| > 1
        ([("<f", 108, (100.0,))], r"offset"),  # vox_offset inside the header
    ],
)
def test_bad_header(tmp_path, patches, match):
    _raises(_patched(tmp_path, *patches), match)


def test_header_patches_land_where_expected(tmp_path):
    """Guards the offsets above: patching srow_x really changes the affine read back."""
    path = _patched(tmp_path, SFORM_ONLY, ("<f", SROW_X, (3.0,)))
    assert nifti.read_header(path).affine[0, 0] == 3.0
    path = _patched(tmp_path, ("<f", PIXDIM + 4, (5.0,)))
    assert nifti.read_header(path).header["pixdim"][1] == 5.0


def test_not_nifti_at_all(tmp_path):
    path = _write(tmp_path / "x.nii.gz", b"hello world, not an image" * 40)
    _raises(path, "not a NIfTI file")


# ------------------------------------------------------------------------------ TIFF


def _lgg(tmp_path: Path, *, mask: np.ndarray | None = None) -> Path:
    folder = tmp_path / "TCGA_CS_0000_20000101"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n in (1, 2):
        tifffile.imwrite(
            folder / f"{folder.name}_{n}.tif",
            rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            photometric="rgb",
        )
        m = np.zeros((32, 32), np.uint8) if mask is None or n == 1 else mask
        tifffile.imwrite(folder / f"{folder.name}_{n}_mask.tif", m)
    return folder


def test_intact_tiff_stack_reads(tmp_path):
    image, masks, _, _ = tiff.read_lgg_stack(_lgg(tmp_path))
    assert image.shape == (3, 32, 32, 2) and masks is not None and masks.shape == (32, 32, 2)


@pytest.mark.parametrize("cut", [0.5, 0.9, 20])
def test_truncated_tiff(tmp_path, cut, caplog):
    folder = _lgg(tmp_path)
    path = folder / f"{folder.name}_2.tif"
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * cut)] if cut < 1 else blob[:cut])
    _raises(folder, f"{path.name}: not a readable TIFF", tiff.read_lgg_stack)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]  # folded into the error


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.zeros((16, 32), np.uint8), r"mask shape \(16, 32\) differs from its image \(32, 32\)"),
        (np.array([[0, 7], [255, 0]], np.uint8).repeat(16, 0).repeat(16, 1), "not binary"),
        (np.zeros((32, 32), np.float32), "mask data type float32"),
    ],
)
def test_bad_tiff_mask(tmp_path, mask, match):
    folder = _lgg(tmp_path, mask=mask)
    err = _raises(folder, match, tiff.read_lgg_stack)
    assert f"{folder.name}_2_mask.tif" in str(err)


def test_tiff_size_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SLICE_BYTES", 1000)
    _raises(_lgg(tmp_path), "MAX_SLICE_BYTES", tiff.read_lgg_stack)


# ------------------------------------------------------------------------------ HDF5


def _h5(tmp_path: Path, **datasets: np.ndarray) -> Path:
    path = tmp_path / "volume_7_slice_64.h5"
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


IMAGE = np.random.default_rng(0).normal(size=(24, 24, 4))
MASK = np.zeros((24, 24, 3), np.uint8)


def test_hdf5_without_mask(tmp_path):
    path = _h5(tmp_path, image=IMAGE)
    _raises(path, "no 'mask' dataset", hdf5.read_h5_slice)
    image, label, _ = hdf5.read_h5_slice(path, read_mask=False)  # segmenting: no mask needed
    assert image.shape == (4, 24, 24, 1) and label is None


@pytest.mark.parametrize(
    ("datasets", "match"),
    [
        ({"mask": MASK}, "no 'image' dataset"),
        ({"image": IMAGE[..., :3], "mask": MASK}, r"'image' has shape \(24, 24, 3\)"),
        ({"image": IMAGE, "mask": MASK[..., :2]}, r"'mask' has shape \(24, 24, 2\)"),
        ({"image": IMAGE, "mask": MASK[:20]}, "differ in size"),
        ({"image": np.where(IMAGE > 2, np.nan, IMAGE), "mask": MASK}, "NaN/Inf"),
        ({"image": IMAGE, "mask": MASK + 2}, "expected 0/1"),
        ({"image": IMAGE.astype("S8"), "mask": MASK}, "expected numbers"),
    ],
)
def test_bad_hdf5(tmp_path, datasets, match):
    _raises(_h5(tmp_path, **datasets), match, hdf5.read_h5_slice)


def test_corrupt_hdf5_and_size_cap(tmp_path, monkeypatch):
    path = _h5(tmp_path, image=IMAGE, mask=MASK)
    hdf5.read_h5_slice(path)
    monkeypatch.setattr(limits, "MAX_SLICE_BYTES", 1000)
    _raises(path, "MAX_SLICE_BYTES", hdf5.read_h5_slice)
    path.write_bytes(path.read_bytes()[:500])
    _raises(path, "not a readable HDF5 file", hdf5.read_h5_slice)


# ------------------------------------------------------------------------------ checkpoints

CONFIG = ModelConfig(name="unet", in_channels=4, out_channels=3, features=(4, 8), head="sigmoid")


def _checkpoint(tmp_path: Path, name: str = "m.pt", **changes: Any) -> Path:
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "kind": "segmentation",
        "ensemble": 2,
        "state_dict": {
            f"members.{i}.{k}": v
            for i in range(2)
            for k, v in build_model(CONFIG, load_weights=False).state_dict().items()
        },
        "model_config": CONFIG.to_dict(),
        "target": TARGETS["regions"].to_dict(),
        "modalities": ["flair", "t1", "t1ce", "t2"],
        "context": 0,
    }
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    save_checkpoint(tmp_path / name, payload)
    return tmp_path / name


@pytest.fixture
def no_real_build(monkeypatch):
    """Fail the test if a network is built anywhere but on the meta device (no memory)."""
    import gliomaseg.models as models

    real = models.build_model

    def guarded(*args: Any, **kwargs: Any) -> torch.nn.Module:
        assert torch.get_default_device().type == "meta", "built a real network"
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "build_model", guarded)


def test_intact_checkpoint_loads(tmp_path):
    model, meta = load_model(_checkpoint(tmp_path))
    assert meta["ensemble"] == 2 and model(torch.zeros(1, 4, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"ensemble": 1e8}, "'ensemble' is a float, not int"),
        ({"ensemble": 10**8}, "ensemble size 100000000 is not between 1 and 32"),
        ({"ensemble": 0}, "ensemble size 0"),
        ({"ensemble": True}, "'ensemble' is a bool"),
        ({"format": 2}, "checkpoint format 2 is not 1; retrain or use a matching"),
        ({"format": None}, "checkpoint format None"),
        ({"shiny": 1}, r"unknown checkpoint key\(s\) \['shiny'\]"),
        ({"state_dict": None}, "not a gliomaseg checkpoint"),
        ({"model_config": "unet"}, "'model_config' is a str"),
        ({"context": -1}, "context -1"),
        ({"state_dict": {"w": torch.tensor([1.0, float("nan")])}}, "NaN/Inf"),
        ({"state_dict": {"w": [1.0]}}, "not a named tensor"),
    ],
)
def test_bad_checkpoint_payload(tmp_path, no_real_build, changes, match):
    path = _checkpoint(tmp_path, **changes)
    _raises(path, match, load_checkpoint)
    _raises(path, match, load_model)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"features": [4096] * 8}, r"weights do not fit .* missing, .* first: missing"),
        ({"features": [4096, 4096]}, r"weights do not fit .* first: .* the config needs"),
        ({"features": [10**6, 10**6]}, r"invalid model config .*\[2, 4096\]"),
        ({"features": list(range(2, 10**4))}, r"invalid model config .* more than 8"),
        ({"in_channels": 12}, "make 4 input channels, the model config has 12"),
        ({"name": "vnet"}, "invalid model config"),
    ],
)
def test_checkpoint_config_checked_before_building(tmp_path, no_real_build, config, match):
    path = _checkpoint(tmp_path, model_config={**CONFIG.to_dict(), **config})
    _raises(path, match, load_model)


def test_checkpoint_weights_checked_against_the_ensemble_size(tmp_path, no_real_build):
    _raises(_checkpoint(tmp_path, ensemble=3), r"1 missing|missing members\.2", load_model)
    _raises(_checkpoint(tmp_path, ensemble=None), "ensemble size 1 .* unexpected", load_model)
    _raises(_checkpoint(tmp_path, target=None), r"without \['target'\]", load_model)


def test_truncated_and_oversized_checkpoint(tmp_path, monkeypatch):
    path = _checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:-200])
    _raises(path, "corrupt", load_checkpoint)
    from gliomaseg.models import checkpoint

    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_BYTES", 1000)
    _raises(_checkpoint(tmp_path, "big.pt"), "MAX_CHECKPOINT_BYTES", load_checkpoint)


# ------------------------------------------------------------------------------ CLI


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(err: str, name: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("gliomaseg: error:")]
    assert len(lines) == 1 and name in lines[0], err
    return lines[0]


@pytest.mark.parametrize("damage", ["flip", "crc", "truncate", "huge"])
def test_cli_inspect_reports_one_line_and_leaves_the_file_alone(tmp_path, capsys, damage):
    path = _good(tmp_path, "Case1_seg.nii.gz")
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0xFF
    elif damage == "crc":
        blob[-8] ^= 0x01
    elif damage == "truncate":
        blob = blob[:-100]
    else:
        blob = bytearray(_patched(tmp_path, ("<3h", DIM + 2, (20000, 20000, 20000))).read_bytes())
    path.write_bytes(blob)
    before = _digest(path)
    assert main(["inspect", str(path)]) == 2
    _one_error_line(capsys.readouterr().err, str(path))
    assert _digest(path) == before


def test_cli_segment_with_a_forged_checkpoint(tmp_path, capsys):
    from gliomaseg.io.writers import write_layout
    from gliomaseg.synthetic.phantoms import make_case

    synth = make_case(
        rng=np.random.default_rng(0), case_id="Synth_000", template="phantom", shape=(32, 32, 16)
    )
    write_layout(synth, tmp_path / "data", layout="brats2020")
    model = _checkpoint(tmp_path, ensemble=10**8)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "data"), "-o", str(out), "--model", str(model)]
    assert main([*args, "--no-progress"]) == 2
    _one_error_line(capsys.readouterr().err, str(model))
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------ real data


def test_real_case_with_a_flipped_byte(shared_data, tmp_path, capsys):
    source = shared_data / "brats" / "BraTS2021_00000"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    case = tmp_path / source.name
    shutil.copytree(source, case)
    seg = case / f"{source.name}_seg.nii.gz"
    seg.chmod(0o644)
    label, _ = nifti.read_label(seg)
    blob = bytearray(seg.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    seg.write_bytes(blob)
    before = _digest(seg)
    _raises(seg, "not a readable NIfTI file", nifti.read_label)
    assert main(["inspect", str(case)]) == 2
    _one_error_line(capsys.readouterr().err, seg.name)
    assert _digest(seg) == before
    assert label.shape == (240, 240, 155)


def test_the_same_checkpoint_payload_gives_the_same_bytes(tmp_path):
    """The atomic write's random temporary name must not leak into the archive (it did: torch
    names the archive's folder after the file), so rebundling the same runs is byte-identical."""
    payload = {"format": CHECKPOINT_FORMAT, "state_dict": {"w": torch.arange(6.0)}}
    save_checkpoint(tmp_path / "a.pt", payload)
    save_checkpoint(tmp_path / "b.pt", payload)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(load_checkpoint(tmp_path / "b.pt")["state_dict"]["w"], torch.arange(6.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]  # no temporary left
