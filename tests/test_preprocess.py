"""Tests for gliomaseg.prepare normalize, crop and splits on small synthetic arrays with odd shapes."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from gliomaseg.prepare.crop import CropInfo, crop_to_brain, uncrop
from gliomaseg.prepare.normalize import brain_mask, check_finite, zscore
from gliomaseg.prepare.splits import kfold_patients
from gliomaseg.prepare.workflow import stratum_of

SHAPE = (33, 34, 35)


def _brain_image(rng: np.random.Generator, channels: int = 2) -> np.ndarray:
    """(C, 33, 34, 35) float32 with a box-shaped 'brain' and zeros outside."""
    image = np.zeros((channels, *SHAPE), dtype=np.float32)
    inner = (slice(None), slice(5, 27), slice(3, 30), slice(8, 21))
    image[inner] = rng.normal(100.0, 20.0, size=image[inner].shape) + 1000.0
    return image


# --------------------------------------------------------------------------- check_finite


def test_check_finite_passes_clean_and_integer_arrays() -> None:
    check_finite(np.zeros((2, 3, 4, 5), np.float32), source="a.nii.gz")
    check_finite(np.arange(10), source="ints")
    check_finite(np.zeros((0,), np.float32), source="empty")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_names_source(bad: float) -> None:
    image = np.zeros((1, 3, 4, 5), np.float32)
    image[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"case_007_flair\.nii\.gz"):
        check_finite(image, source="case_007_flair.nii.gz")


# --------------------------------------------------------------------------- zscore


def test_brain_mask_is_any_channel_nonzero() -> None:
    image = np.zeros((2, *SHAPE), np.float32)
    image[0, 1, 1, 1] = 1.0
    image[1, 2, 2, 2] = -3.0
    mask = brain_mask(image)
    assert mask.shape == SHAPE and mask.dtype == bool
    assert mask.sum() == 2 and mask[1, 1, 1] and mask[2, 2, 2]


def test_zscore_default_mask_is_per_channel_nonzero() -> None:
    rng = np.random.default_rng(0)
    image = _brain_image(rng)
    out = zscore(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    for c in range(image.shape[0]):
        inside = image[c] != 0
        assert abs(float(out[c][inside].mean())) < 1e-4
        assert abs(float(out[c][inside].std()) - 1.0) < 1e-4
        assert np.all(out[c][~inside] == 0)


def test_zscore_with_explicit_mask() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(5.0, 3.0, size=(3, *SHAPE)).astype(np.float32)
    mask = np.zeros(SHAPE, bool)
    mask[2:20, 4:31, 1:9] = True
    out = zscore(image, mask=mask)
    for c in range(3):
        assert abs(float(out[c][mask].mean())) < 1e-4
        assert abs(float(out[c][mask].std()) - 1.0) < 1e-4
    assert np.all(out[:, ~mask] == 0)


def test_zscore_constant_and_empty_channels_give_no_nan() -> None:
    image = np.zeros((3, *SHAPE), np.float32)
    image[0, 4:10, 4:10, 4:10] = 7.0  # constant inside its brain
    # channel 1 all zeros: no brain voxels
    image[2, 4:10, 4:10, 4:10] = np.arange(216, dtype=np.float32).reshape(6, 6, 6) + 1
    out = zscore(image)
    assert np.isfinite(out).all()
    assert np.all(out[0] == 0)  # mean subtracted only
    assert np.all(out[1] == 0)
    assert abs(float(out[2][image[2] != 0].std()) - 1.0) < 1e-4


def test_zscore_empty_mask_gives_zeros() -> None:
    image = np.ones((2, 5, 6, 7), np.float32)
    out = zscore(image, mask=np.zeros((5, 6, 7), bool))
    assert np.all(out == 0) and np.isfinite(out).all()


def test_zscore_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="channels-first"):
        zscore(np.zeros(SHAPE, np.float32))
    with pytest.raises(ValueError, match="mask shape"):
        zscore(np.zeros((1, *SHAPE), np.float32), mask=np.zeros((3, 3, 3), bool))


# --------------------------------------------------------------------------- crop / uncrop


@pytest.mark.parametrize("margin", [0, 2, 50])
def test_crop_uncrop_round_trip(margin: int) -> None:
    rng = np.random.default_rng(2)
    image = _brain_image(rng)
    label = np.zeros(SHAPE, np.uint8)
    label[10:15, 10:20, 10:12] = 3
    cropped, cropped_label, info = crop_to_brain(image, label, margin=margin)
    assert cropped_label is not None
    assert cropped.shape[1:] == cropped_label.shape == info.cropped_shape
    assert cropped.dtype == image.dtype and cropped_label.dtype == np.uint8
    if margin == 0:
        assert cropped.shape == (2, 22, 27, 13)
    np.testing.assert_array_equal(uncrop(cropped, info), image)
    np.testing.assert_array_equal(uncrop(cropped_label, info), label)


def test_uncrop_leading_axes_and_fill() -> None:
    rng = np.random.default_rng(3)
    image = _brain_image(rng, channels=1)
    _, none_label, info = crop_to_brain(image)
    assert none_label is None
    batch = rng.random((2, 4, *info.cropped_shape)).astype(np.float32)
    back = uncrop(batch, info, fill=-1)
    assert back.shape == (2, 4, *SHAPE)
    np.testing.assert_array_equal(back[(..., *info.slices)], batch)
    outside = np.ones(SHAPE, bool)
    outside[info.slices] = False
    assert np.all(back[:, :, outside] == -1)


def test_crop_empty_mask_is_whole_volume() -> None:
    image = np.zeros((2, *SHAPE), np.float32)
    cropped, _, info = crop_to_brain(image)
    assert cropped.shape == image.shape
    assert info.cropped_shape == SHAPE
    np.testing.assert_array_equal(uncrop(cropped, info), image)


def test_crop_with_explicit_mask() -> None:
    image = np.ones((1, *SHAPE), np.float32)
    mask = np.zeros(SHAPE, bool)
    mask[3:6, 7:9, 2] = True
    cropped, _, info = crop_to_brain(image, mask=mask, margin=1)
    assert cropped.shape == (1, 5, 4, 3)
    assert info.start == (2, 6, 1) and info.stop == (7, 10, 4)


def test_crop_info_json_round_trip() -> None:
    info = CropInfo(shape=(33, 34, 35), start=(1, 2, 3), stop=(30, 31, 32))
    again = CropInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info
    assert again.slices == (slice(1, 30), slice(2, 31), slice(3, 32))


def test_crop_info_rejects_bad_data() -> None:
    with pytest.raises(ValueError, match="shape"):
        CropInfo.from_dict({"start": [0, 0, 0], "stop": [1, 1, 1]})
    with pytest.raises(ValueError, match="does not fit"):
        CropInfo(shape=(4, 4, 4), start=(0, 0, 0), stop=(5, 1, 1))


def test_uncrop_rejects_wrong_shape() -> None:
    info = CropInfo(shape=(10, 10, 10), start=(1, 1, 1), stop=(5, 5, 5))
    with pytest.raises(ValueError, match="cropped spatial shape"):
        uncrop(np.zeros((3, 4, 5)), info)


def test_crop_rejects_label_on_other_grid() -> None:
    with pytest.raises(ValueError, match="label shape"):
        crop_to_brain(np.ones((1, *SHAPE), np.float32), np.zeros((3, 3, 3), np.uint8))


# --------------------------------------------------------------------------- patient splits

INSTITUTIONS = ("CS", "DU", "HT")


def _lgg_patients() -> list[str]:
    return [f"TCGA_{inst}_{1000 + i}" for inst in INSTITUTIONS for i in range(10)]


@pytest.mark.parametrize("k", [2, 3, 5, 7, 30])
def test_kfold_partitions_patients(k: int) -> None:
    patients = _lgg_patients()
    folds = kfold_patients(patients, k, seed=3)
    assert len(folds) == k
    val_counts = Counter(p for _, val in folds for p in val)
    # every patient is in exactly one validation fold: no patient appears in two folds
    assert set(val_counts) == set(patients)
    assert all(n == 1 for n in val_counts.values())
    for train, val in folds:
        assert not set(train) & set(val)
        assert sorted(train + val) == sorted(patients)
        assert train == sorted(train) and val == sorted(val)
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1


def test_kfold_deduplicates_slice_level_ids() -> None:
    patients = _lgg_patients()
    per_slice = [p for p in patients for _ in range(4)]
    assert kfold_patients(per_slice, 5, seed=1) == kfold_patients(patients, 5, seed=1)


def test_kfold_deterministic_across_calls_and_input_order() -> None:
    patients = _lgg_patients()
    shuffled = list(np.random.default_rng(99).permutation(patients))
    first = kfold_patients(patients, 5, seed=11)
    assert kfold_patients(patients, 5, seed=11) == first
    assert kfold_patients([str(p) for p in shuffled], 5, seed=11) == first
    assert kfold_patients(tuple(reversed(patients)), 5, seed=11) == first
    assert kfold_patients(patients, 5, seed=12) != first
    assert all(isinstance(p, str) for _, val in first for p in val)


def test_kfold_stratified_balance() -> None:
    patients = _lgg_patients()
    strata = {p: stratum_of(p) for p in patients}
    for seed in range(5):
        folds = kfold_patients(patients, 5, seed=seed, strata=strata)
        for _, val in folds:
            counts = Counter(strata[p] for p in val)
            assert counts == dict.fromkeys(INSTITUTIONS, 2)


def test_kfold_stratified_uneven_strata_stay_balanced() -> None:
    patients = [f"TCGA_A{s}_{i}" for s, n in enumerate([3, 4, 5, 7]) for i in range(n)]
    strata = {p: stratum_of(p) for p in patients}
    folds = kfold_patients(patients, 5, seed=0, strata=strata)
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1
    for stratum in set(strata.values()):
        per_fold = [sum(strata[p] == stratum for p in val) for _, val in folds]
        assert max(per_fold) - min(per_fold) <= 1


@pytest.mark.parametrize("k", [1, 0, -2, 31, True])
def test_kfold_rejects_bad_k(k: int) -> None:
    with pytest.raises(ValueError, match="k must be"):
        kfold_patients(_lgg_patients(), k)


def test_kfold_rejects_empty_and_string_and_missing_strata() -> None:
    with pytest.raises(ValueError, match="empty"):
        kfold_patients([], 2)
    with pytest.raises(ValueError, match="not one string"):
        kfold_patients("TCGA_CS_4941", 2)
    patients = _lgg_patients()
    with pytest.raises(ValueError, match="strata has no entry"):
        kfold_patients(patients, 2, strata={patients[0]: "CS"})


def test_kfold_accepts_generator() -> None:
    patients = _lgg_patients()
    a = kfold_patients(patients, 3, seed=np.random.default_rng(5))
    b = kfold_patients(patients, 3, seed=np.random.default_rng(5))
    assert a == b
