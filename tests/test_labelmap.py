"""io.labelmap: one policy for a label map's shape, values and scheme."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.core.errors import InputError
from gliomaseg.core.labels import ED, ET, NCR
from gliomaseg.io.labelmap import (
    encode_labels,
    label_grid,
    label_values,
    read_label_map,
    read_raw_label_map,
)

#: One flipped axis and 2 mm slices, to catch orientation bugs.
AFFINE = np.diag([-1.0, 1.0, 2.0, 1.0])


def _write(path: Path, data: np.ndarray, dtype: type = np.uint8) -> Path:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), AFFINE)
    img.set_data_dtype(dtype)
    nib.save(img, str(path))
    return path


def _brats2020(shape: tuple[int, ...]) -> np.ndarray:
    data = np.zeros(shape, dtype=np.uint8)
    flat = data.reshape(-1)
    flat[:3] = (1, 2, 4)
    return data


def test_3d_map_read_on_its_own_grid(tmp_path: Path) -> None:
    path = _write(tmp_path / "seg.nii.gz", _brats2020((5, 4, 3)))
    found = read_label_map(path)
    assert found.codes.shape == (5, 4, 3) and found.codes.dtype == np.uint8
    assert found.scheme.name == "brats2020"
    assert found.source_shape == (5, 4, 3) and found.path == path
    np.testing.assert_array_equal(found.affine, AFFINE)
    assert found.codes.reshape(-1)[:3].tolist() == [NCR, ED, ET]
    codes, affine = found.canonical()
    assert codes.shape == (5, 4, 3)
    assert affine[0, 0] > 0  # the flipped axis is flipped back
    np.testing.assert_array_equal(codes, found.codes[::-1])


def test_2d_map_becomes_one_slice(tmp_path: Path) -> None:
    path = _write(tmp_path / "slice.nii.gz", _brats2020((6, 5)))
    found = read_label_map(path)
    assert found.codes.shape == (6, 5, 1)
    assert found.source_shape == (6, 5)
    raw, _ = read_raw_label_map(path)
    assert raw.shape == (6, 5, 1)


def test_trailing_singleton_axis_is_squeezed(tmp_path: Path) -> None:
    path = _write(tmp_path / "seg4d.nii.gz", _brats2020((5, 4, 3, 1)))
    found = read_label_map(path)
    assert found.codes.shape == (5, 4, 3)
    assert found.source_shape == (5, 4, 3, 1)


def test_other_4d_maps_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "series.nii.gz", np.zeros((5, 4, 3, 2)))
    with pytest.raises(InputError, match=r"series\.nii\.gz.*2D or 3D"):
        read_label_map(path)
    with pytest.raises(InputError, match="series"):
        read_raw_label_map(path)


def test_fractional_values_are_refused_not_truncated(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 2), dtype=np.float32)
    data[0, 0, 0] = 0.6  # truncation would make this 0 and "explain" it
    path = _write(tmp_path / "probs.nii.gz", data, dtype=np.float32)
    with pytest.raises(InputError, match=r"probs\.nii\.gz.*non-integer"):
        read_label_map(path)
    with pytest.raises(InputError, match="non-integer"):
        read_raw_label_map(path)  # the binary comparison reads the same way
    data[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        read_label_map(_write(tmp_path / "nan.nii.gz", data, dtype=np.float32))


def test_float_maps_holding_integers_are_rounded(tmp_path: Path) -> None:
    data = _brats2020((4, 4, 2)).astype(np.float32)
    data.reshape(-1)[1] = np.float32(2.0) - np.float32(1e-6)  # a float32 export of 2
    found = read_label_map(_write(tmp_path / "float.nii.gz", data, dtype=np.float32))
    assert found.scheme.name == "brats2020"
    assert found.codes.reshape(-1)[:3].tolist() == [NCR, ED, ET]
    assert label_values(data) == {0, 1, 2, 4}


def test_scheme_wins_outright_and_hint_only_guides_the_guess(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 2), dtype=np.uint8)
    data.reshape(-1)[:2] = (1, 2)  # {0, 1, 2}: BraTS 2020 by default, MSD when hinted
    path = _write(tmp_path / "seg.nii.gz", data)
    assert read_label_map(path).scheme.name == "brats2020"
    assert read_label_map(path, hint="msd").scheme.name == "msd"
    assert read_label_map(path, scheme="msd", hint="brats2020").scheme.name == "msd"
    # A hint that does not explain the values is passed over; a scheme is not.
    data.reshape(-1)[2] = 4
    path = _write(tmp_path / "seg4.nii.gz", data)
    assert read_label_map(path, hint="msd").scheme.name == "brats2020"
    with pytest.raises(InputError, match=r"seg4\.nii\.gz.*unknown label value"):
        read_label_map(path, scheme="msd")


def test_unknown_values_and_scheme_names_are_input_errors(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 2), dtype=np.uint8)
    data[0, 0, 0] = 9
    path = _write(tmp_path / "odd.nii.gz", data)
    with pytest.raises(InputError, match=r"odd\.nii\.gz.*match no known scheme"):
        read_label_map(path)
    with pytest.raises(InputError, match=r"odd\.nii\.gz.*unknown label scheme"):
        read_label_map(path, scheme="nonsense")


def test_encode_labels_keeps_the_shape() -> None:
    raw = np.zeros((3, 2, 2), dtype=np.int16)  # e.g. an MSD label on a 4D image's grid
    raw[0, 0, 0] = 3
    codes, scheme = encode_labels(raw, "label.nii.gz", scheme="msd")
    assert codes.shape == raw.shape and scheme.name == "msd" and codes[0, 0, 0] == ET
    codes, scheme = encode_labels(np.array([[0.0, 255.0]]), "mask.tif")
    assert codes.shape == (1, 2) and scheme.name == "lgg"


def test_label_grid_policy() -> None:
    assert label_grid(np.zeros((3, 2)), "a").shape == (3, 2, 1)
    assert label_grid(np.zeros((3, 2, 4, 1)), "a").shape == (3, 2, 4)
    assert label_grid(np.zeros((3, 2, 4)), "a").shape == (3, 2, 4)
    with pytest.raises(InputError, match="a: label map has shape"):
        label_grid(np.zeros(3), "a")
