"""Tests for gliomaseg.prepare.preprocess on small synthetic arrays with odd shapes."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest

from gliomaseg.prepare.preprocess import (
    CropInfo,
    PadInfo,
    bounding_box,
    brain_mask,
    check_finite,
    crop_to_brain,
    kfold_patients,
    lgg_institution,
    pad_to_multiple,
    resize,
    resize_image,
    resize_label,
    split_items_by_patient,
    train_val_split,
    tumour_slices,
    uncrop,
    unpad,
    zscore,
)

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


def test_bounding_box_with_margin_is_clipped() -> None:
    mask = np.zeros(SHAPE, bool)
    mask[1, 10, 30] = True
    mask[4, 12, 34] = True
    assert bounding_box(mask) == (slice(1, 5), slice(10, 13), slice(30, 35))
    assert bounding_box(mask, margin=3) == (slice(0, 8), slice(7, 16), slice(27, 35))


def test_bounding_box_empty_mask_is_whole_volume() -> None:
    assert bounding_box(np.zeros(SHAPE, bool)) == (slice(0, 33), slice(0, 34), slice(0, 35))


@pytest.mark.parametrize("margin", [-1, 1.5, True])
def test_bounding_box_rejects_bad_margin(margin: Any) -> None:
    with pytest.raises(ValueError, match="margin"):
        bounding_box(np.ones(SHAPE, bool), margin=margin)


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


# --------------------------------------------------------------------------- pad / unpad


@pytest.mark.parametrize("multiple", [16, 32])
@pytest.mark.parametrize(
    "shape", [(2, 33, 34, 35), (1, 1, 17, 31), (240, 240, 155), (3, 5, 7, 1), (2, 32, 48, 64)]
)
def test_pad_unpad_round_trip(multiple: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(4)
    array = rng.random(shape).astype(np.float32)
    padded, info = pad_to_multiple(array, multiple)
    assert padded.dtype == array.dtype
    assert padded.shape[:-3] == array.shape[:-3]
    for n_in, n_out in zip(array.shape[-3:], padded.shape[-3:], strict=True):
        assert n_out % multiple == 0 and 0 <= n_out - n_in < multiple
    np.testing.assert_array_equal(unpad(padded, info), array)


def test_pad_is_centred() -> None:
    padded, info = pad_to_multiple(np.ones((1, 11, 16, 1), np.float32), 16)
    assert info.before == (2, 0, 7) and info.after == (3, 0, 8)
    assert padded.shape == (1, 16, 16, 16)
    assert padded[0, :2].sum() == 0 and padded[0, 2:13, :, 7].sum() == 11 * 16


def test_pad_already_multiple_is_noop() -> None:
    array = np.arange(2 * 16 * 32 * 48, dtype=np.float32).reshape(2, 16, 32, 48)
    padded, info = pad_to_multiple(array, 16)
    assert info.before == (0, 0, 0) and info.after == (0, 0, 0)
    np.testing.assert_array_equal(padded, array)
    np.testing.assert_array_equal(unpad(padded, info), array)


def test_pad_value_modes_and_axes() -> None:
    array = np.ones((3, 5, 6), np.float32)
    padded, info = pad_to_multiple(array, 4, axes=(1,), value=-2)
    assert padded.shape == (3, 8, 6)
    assert info.axes == (-2,)
    assert np.all(padded[:, 0] == -2) and np.all(padded[:, -2:] == -2)
    edge, _ = pad_to_multiple(array, [4, 8], axes=(-2, -1), mode="edge")
    assert edge.shape == (3, 8, 8) and np.all(edge == 1)
    np.testing.assert_array_equal(unpad(padded, info), array)


def test_pad_info_applies_to_fewer_leading_axes() -> None:
    image = np.zeros((4, 33, 34, 35), np.float32)
    label = np.random.default_rng(5).integers(0, 4, SHAPE).astype(np.uint8)
    _, info = pad_to_multiple(image, 16)
    padded_label, label_info = pad_to_multiple(label, 16)
    assert label_info == info
    np.testing.assert_array_equal(unpad(padded_label, info), label)


def test_pad_info_json_round_trip() -> None:
    _, info = pad_to_multiple(np.zeros((2, 33, 34, 35)), 32)
    again = PadInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info
    with pytest.raises(ValueError, match="axes"):
        PadInfo.from_dict({"before": [1], "after": [1]})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"multiple": 0}, "multiple"),
        ({"multiple": 16.0}, "multiple"),
        ({"multiple": [16, 16]}, "multiple"),
        ({"multiple": 16, "mode": "wrap"}, "mode"),
        ({"multiple": 16, "axes": (0, -4)}, "same axis"),
        ({"multiple": 16, "axes": (4,)}, "out of range"),
    ],
)
def test_pad_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pad_to_multiple(np.zeros((2, 3, 4, 5)), **kwargs)


def test_unpad_rejects_too_small_array() -> None:
    _, info = pad_to_multiple(np.zeros((3, 5, 7)), 16)
    with pytest.raises(ValueError, match="unpad"):
        unpad(np.zeros((3, 5, 7)), info)


# --------------------------------------------------------------------------- resize


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((33, 34, 35), (64, 64, 64)),
        ((33, 34, 35), (17, 13, 7)),
        ((240, 240, 155), (128, 128, 77)),
        ((33, 34, 1), (96, 96, 1)),
        ((7, 9, 11), (7, 9, 11)),
    ],
)
def test_resize_exact_shape_and_label_values(
    src: tuple[int, int, int], dst: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(6)
    label = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=src)
    out = resize_label(label, dst)
    assert out.shape == dst and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1, 2, 4}
    image = rng.random((2, *src)).astype(np.float32)
    out_image = resize_image(image, dst)
    assert out_image.shape == (2, *dst) and out_image.dtype == np.float32
    assert out_image.min() >= image.min() - 1e-6 and out_image.max() <= image.max() + 1e-6


def test_resize_identity_is_exact() -> None:
    image = np.random.default_rng(7).random((2, 7, 9, 11)).astype(np.float32)
    np.testing.assert_allclose(resize(image, (7, 9, 11), order=1), image, atol=1e-6)
    label = (image[0] > 0.5).astype(np.uint8)
    np.testing.assert_array_equal(resize(label, (7, 9, 11), order=0), label)


def test_resize_2d_with_leading_axes() -> None:
    array = np.random.default_rng(8).random((3, 2, 31, 29)).astype(np.float32)
    out = resize(array, (64, 48), order=1)
    assert out.shape == (3, 2, 64, 48)


def test_resize_nearest_upsample_by_two_duplicates_voxels() -> None:
    label = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    out = resize(label, (4, 4, 4), order=0)
    expected = label.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(out, expected)


def test_resize_linear_keeps_constant_image() -> None:
    image = np.full((1, 5, 6, 7), 3.5, np.float32)
    np.testing.assert_allclose(resize_image(image, (11, 3, 8)), 3.5, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "order", "match"),
    [
        ((4,), 1, "shape"),
        ((4, 4, 4, 4), 1, "shape"),
        ((0, 4, 4), 1, "shape"),
        ((4, 4, 4), 7, "order"),
    ],
)
def test_resize_rejects_bad_arguments(shape: tuple[int, ...], order: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resize(np.zeros((5, 5, 5)), shape, order=order)


def test_resize_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        resize(np.zeros((0, 5, 5)), (4, 4, 4), order=0)


# --------------------------------------------------------------------------- tumour_slices


def _label_with_counts(counts: list[int]) -> np.ndarray:
    label = np.zeros((10, 10, len(counts)), np.uint8)
    for z, n in enumerate(counts):
        label[:, :, z].flat[:n] = 2
    return label


def test_tumour_slices_threshold_is_inclusive() -> None:
    label = _label_with_counts([0, 1, 50, 51, 100, 49])
    np.testing.assert_array_equal(tumour_slices(label), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(tumour_slices(label, min_pixels=50), [2, 3, 4])
    # "strictly more than 50 pixels" == min_pixels=51
    np.testing.assert_array_equal(tumour_slices(label, min_pixels=51), [3, 4])
    np.testing.assert_array_equal(tumour_slices(label, min_pixels=0), [0, 1, 2, 3, 4, 5])
    assert tumour_slices(label, min_pixels=101).size == 0
    assert tumour_slices(label).dtype == np.int64


def test_tumour_slices_other_axis() -> None:
    label = np.zeros((4, 5, 6), np.uint8)
    label[2, :3, :] = 1
    np.testing.assert_array_equal(tumour_slices(label, axis=0), [2])
    np.testing.assert_array_equal(tumour_slices(label, axis=1), [0, 1, 2])
    np.testing.assert_array_equal(tumour_slices(label, axis=1, min_pixels=7), [])


def test_tumour_slices_docstring_example() -> None:
    lab = np.zeros((8, 8, 3), np.uint8)
    lab[:, :, 1] = 1
    lab[:7, :7, 2] = 1
    np.testing.assert_array_equal(tumour_slices(lab, min_pixels=51), [1])


@pytest.mark.parametrize(("kwargs", "match"), [({"min_pixels": -1}, ">= 0"), ({"axis": 3}, "axis")])
def test_tumour_slices_rejects_bad_arguments(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tumour_slices(np.zeros((2, 3, 4), np.uint8), **kwargs)


# --------------------------------------------------------------------------- patient splits

INSTITUTIONS = ("CS", "DU", "HT")


def _lgg_patients() -> list[str]:
    return [f"TCGA_{inst}_{1000 + i}" for inst in INSTITUTIONS for i in range(10)]


def test_lgg_institution() -> None:
    assert lgg_institution("TCGA_CS_4941") == "CS"
    assert lgg_institution("TCGA_CS_4941_19960909") == "CS"
    assert lgg_institution("TCGA-DU-7010") == "DU"
    for bad in ("BraTS20_Training_001", "TCGA", "TCGA__12"):
        with pytest.raises(ValueError, match="TCGA"):
            lgg_institution(bad)


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
    strata = {p: lgg_institution(p) for p in patients}
    for seed in range(5):
        folds = kfold_patients(patients, 5, seed=seed, strata=strata)
        for _, val in folds:
            counts = Counter(strata[p] for p in val)
            assert counts == dict.fromkeys(INSTITUTIONS, 2)


def test_kfold_stratified_uneven_strata_stay_balanced() -> None:
    patients = [f"TCGA_A{s}_{i}" for s, n in enumerate([3, 4, 5, 7]) for i in range(n)]
    strata = {p: lgg_institution(p) for p in patients}
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


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.5, 0.9])
def test_train_val_split_sizes_and_disjoint(fraction: float) -> None:
    patients = _lgg_patients()
    train, val = train_val_split(patients + patients[:5], val_fraction=fraction, seed=2)
    assert len(val) == round(fraction * 30)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(patients)


def test_train_val_split_deterministic_and_order_free() -> None:
    patients = _lgg_patients()
    first = train_val_split(patients, seed=4)
    assert train_val_split(list(reversed(patients)), seed=4) == first
    assert train_val_split(patients, seed=5) != first


def test_train_val_split_stratified() -> None:
    patients = _lgg_patients()
    strata = {p: lgg_institution(p) for p in patients}
    _, val = train_val_split(patients, val_fraction=0.2, seed=0, strata=strata)
    assert Counter(strata[p] for p in val) == dict.fromkeys(INSTITUTIONS, 2)
    _, val = train_val_split(patients, val_fraction=0.1, seed=0, strata=strata)
    assert Counter(strata[p] for p in val) == dict.fromkeys(INSTITUTIONS, 1)


def test_train_val_split_small_sets_keep_both_sides() -> None:
    assert train_val_split(["a", "b"], val_fraction=0.01) in ((["a"], ["b"]), (["b"], ["a"]))
    train, val = train_val_split(["a", "b", "c"], val_fraction=0.99)
    assert len(train) == 1 and len(val) == 2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_train_val_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(_lgg_patients(), val_fraction=fraction)


def test_train_val_split_rejects_too_few_patients() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        train_val_split(["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        train_val_split([])


def test_split_items_by_patient_never_leaks() -> None:
    patients = _lgg_patients()
    slices = [(p, z) for p in patients for z in range(6)]
    folds = kfold_patients([p for p, _ in slices], 5, seed=0)
    item_folds = split_items_by_patient(slices, lambda item: item[0], folds)
    assert len(item_folds) == 5
    seen_in_val: Counter[tuple[str, int]] = Counter()
    for (train_items, val_items), (train_ids, val_ids) in zip(item_folds, folds, strict=True):
        assert {p for p, _ in val_items} == set(val_ids)
        assert {p for p, _ in train_items} == set(train_ids)
        assert not {p for p, _ in train_items} & {p for p, _ in val_items}
        assert len(train_items) + len(val_items) == len(slices)
        seen_in_val.update(val_items)
    assert set(seen_in_val) == set(slices) and set(seen_in_val.values()) == {1}


def test_split_items_by_patient_errors() -> None:
    with pytest.raises(ValueError, match="neither"):
        split_items_by_patient(["x"], lambda s: s, [(["a"], ["b"])])
    with pytest.raises(ValueError, match="both train and val"):
        split_items_by_patient(["a"], lambda s: s, [(["a"], ["a"])])
    assert split_items_by_patient([], lambda s: s, [(["a"], ["b"])]) == [([], [])]


def test_resize_matches_scipy_zoom_grid_mode() -> None:
    from scipy import ndimage

    image = np.random.default_rng(9).random((10, 12, 14)).astype(np.float32)
    zoomed = ndimage.zoom(image, (2, 1.5, 0.5), order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(resize(image, zoomed.shape, order=1), zoomed, atol=1e-6)


def test_resize_bool_mask_nearest() -> None:
    mask = np.zeros((9, 9, 3), bool)
    mask[3:6, 3:6] = True
    out = resize(mask, (18, 18, 3), order=0)
    assert out.dtype == bool and out.sum() == 6 * 6 * 3
