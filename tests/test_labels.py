from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.core.labels import (
    BRATS2013,
    BRATS2020,
    BRATS2023,
    LGG,
    MSD,
    SCHEMES,
    get_scheme,
    guess_scheme,
    onehot_to_internal,
    region_mask,
)


@pytest.mark.parametrize(
    ("scheme", "raw", "internal"),
    [
        (BRATS2020, [0, 1, 2, 4], [0, 1, 2, 3]),
        (BRATS2023, [0, 1, 2, 3], [0, 1, 2, 3]),
        (MSD, [0, 1, 2, 3], [0, 2, 1, 3]),  # MSD: 1 edema, 2 non-enhancing, 3 enhancing
        (BRATS2013, [0, 1, 2, 3, 4], [0, 1, 2, 1, 3]),
        (LGG, [0, 255], [0, 1]),
    ],
)
def test_encode_maps_each_scheme_to_internal_codes(scheme, raw, internal):
    np.testing.assert_array_equal(scheme.encode(np.array(raw)), internal)


@pytest.mark.parametrize("name", ["brats2020", "brats2023", "msd", "lgg", "binary"])
def test_decode_inverts_encode_for_lossless_schemes(name):
    scheme = SCHEMES[name]
    raw = np.array(sorted(scheme.to_internal))
    np.testing.assert_array_equal(scheme.decode(scheme.encode(raw)), raw)


def test_brats2013_round_trip_is_lossy_only_for_non_enhancing():
    raw = np.array([0, 1, 2, 3, 4])
    np.testing.assert_array_equal(BRATS2013.decode(BRATS2013.encode(raw)), [0, 1, 2, 1, 4])


def test_conversion_between_schemes_brats2020_to_2023():
    raw = np.array([[0, 1], [2, 4]])
    np.testing.assert_array_equal(BRATS2023.decode(BRATS2020.encode(raw)), [[0, 1], [2, 3]])


def test_unknown_values_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"unknown label value\(s\) \[3, 7\].*brats2020"):
        BRATS2020.encode(np.array([0, 1, 3, 7]), source="seg.nii.gz")


def test_float_labels_must_be_integers():
    assert BRATS2020.encode(np.array([0.0, 4.0])).tolist() == [0, 3]
    with pytest.raises(ValueError, match="non-integer"):
        BRATS2020.encode(np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="NaN"):
        BRATS2020.encode(np.array([0.0, np.nan]))


def test_binary_scheme_cannot_write_subregions():
    with pytest.raises(ValueError, match="cannot represent"):
        LGG.decode(np.array([0, 2]))


def test_guess_scheme():
    assert guess_scheme({0, 1, 2, 4}).name == "brats2020"
    assert guess_scheme({0, 1, 2, 3}).name == "brats2023"
    assert guess_scheme({0, 255}).name == "lgg"
    assert guess_scheme({0, 1, 2, 3}, hint="msd").name == "msd"
    with pytest.raises(ValueError, match=r"\[0, 3, 4\]"):
        guess_scheme({0, 3, 4})
    with pytest.raises(ValueError, match="unknown label scheme"):
        get_scheme("brats1999")


def test_regions():
    labels = np.array([0, 1, 2, 3])
    assert region_mask(labels, "WT").tolist() == [False, True, True, True]
    assert region_mask(labels, "TC").tolist() == [False, True, False, True]
    assert region_mask(labels, "ET").tolist() == [False, False, False, True]
    assert LGG.regions == {"WT": (1,)}


def test_onehot_to_internal():
    onehot = np.zeros((2, 2, 3), dtype=np.uint8)
    onehot[0, 0, 0] = 1  # NCR
    onehot[0, 1, 1] = 1  # ED
    onehot[1, 0, 2] = 1  # ET
    np.testing.assert_array_equal(onehot_to_internal(onehot), [[1, 2], [3, 0]])
    onehot[1, 1, :2] = 1
    with pytest.raises(ValueError, match="overlap"):
        onehot_to_internal(onehot)
