"""Metrics: hand-computable cases, empty-mask policies, and agreement with MONAI."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from gliomaseg.core.labels import BRATS2020, REGIONS
from gliomaseg.evaluate import metrics as m
from gliomaseg.evaluate.metrics import distance

COUNT_METRICS = ("dice", "iou", "precision", "recall", "specificity", "f1")


def _all(counts: m.Counts, empty: m.EmptyPolicy = "brats") -> dict[str, float]:
    return {
        "dice": m.dice(counts, empty=empty),
        "iou": m.iou(counts, empty=empty),
        "precision": m.precision(counts, empty=empty),
        "recall": m.recall(counts, empty=empty),
        "specificity": m.specificity(counts, empty=empty),
        "f1": m.f1(counts, empty=empty),
    }


def _points(shape: tuple[int, ...], *coords: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for c in coords:
        mask[c] = True
    return mask


# --------------------------------------------------------------------------- counts, formulas


def test_confusion_counts_and_formulas_by_hand():
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    ref = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    c = m.confusion(pred, ref)
    assert (c.tp, c.fp, c.fn, c.tn, c.total) == (2, 1, 1, 4, 8)
    got = _all(c)
    assert got["dice"] == pytest.approx(4 / 6)
    assert got["iou"] == pytest.approx(2 / 4)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["specificity"] == pytest.approx(4 / 5)
    p, r = got["precision"], got["recall"]
    assert got["f1"] == pytest.approx(2 * p * r / (p + r))


def test_counts_accept_integer_label_arrays_as_masks():
    c = m.confusion(np.array([[0, 3], [2, 0]]), np.array([[0, 1], [0, 0]]))
    assert (c.tp, c.fp, c.fn, c.tn) == (1, 1, 0, 2)


def test_both_empty_brats_policy_is_perfect_score():
    z = np.zeros((4, 5, 6), dtype=bool)
    assert _all(m.confusion(z, z)) == dict.fromkeys(COUNT_METRICS, 1.0)
    assert m.hd95(z, z, spacing=(1, 1, 2)) == 0.0
    assert m.abs_volume_difference_ml(z, z, spacing=(1, 1, 2)) == 0.0


def test_both_empty_nan_policy():
    z = np.zeros((4, 5, 6), dtype=bool)
    got = _all(m.confusion(z, z), empty="nan")
    assert all(math.isnan(got[k]) for k in ("dice", "iou", "precision", "recall", "f1"))
    assert got["specificity"] == 1.0  # defined: every voxel is a true negative
    assert math.isnan(m.hd95(z, z, spacing=1.0, empty="nan"))


def test_empty_reference_with_a_prediction():
    shape = (4, 5, 6)
    ref = np.zeros(shape, dtype=bool)
    pred = _points(shape, (1, 1, 1), (2, 2, 2))
    c = m.confusion(pred, ref)
    got = _all(c)
    assert got == {
        "dice": 0.0,
        "iou": 0.0,
        "precision": 0.0,
        "recall": 0.0,  # 0/0: one mask is empty -> 0 under BraTS
        "specificity": pytest.approx(118 / 120),
        "f1": 0.0,
    }
    assert math.isnan(m.recall(c, empty="nan"))
    assert m.dice(c, empty="nan") == 0.0  # defined: 0 / 2
    diagonal = math.sqrt(4**2 + 5**2 + (6 * 2) ** 2)
    assert m.hd95(pred, ref, spacing=(1, 1, 2)) == pytest.approx(diagonal)
    assert m.image_diagonal_mm(shape, (1, 1, 2)) == pytest.approx(diagonal)
    assert math.isnan(m.hd95(pred, ref, spacing=(1, 1, 2), empty="nan"))


def test_empty_prediction_with_a_reference():
    shape = (4, 5, 6)
    pred = np.zeros(shape, dtype=bool)
    ref = _points(shape, (0, 0, 0))
    c = m.confusion(pred, ref)
    got = _all(c)
    assert got["dice"] == got["iou"] == got["recall"] == got["f1"] == 0.0
    assert got["precision"] == 0.0  # 0/0 with a non-empty reference
    assert got["specificity"] == 1.0
    assert math.isnan(m.precision(c, empty="nan"))
    assert m.hd95(pred, ref, spacing=1.0) == pytest.approx(math.sqrt(16 + 25 + 36))


def test_specificity_when_the_reference_covers_everything():
    full = np.ones((3, 3), dtype=bool)
    assert m.specificity(m.confusion(full, full)) == 1.0
    partial = full.copy()
    partial[0, 0] = False
    assert m.specificity(m.confusion(partial, full)) == 0.0
    assert math.isnan(m.specificity(m.confusion(partial, full), empty="nan"))


def test_brats_diagonal_is_the_challenge_value():
    assert m.image_diagonal_mm((240, 240, 155), (1.0, 1.0, 1.0)) == pytest.approx(373.13, abs=0.01)


# --------------------------------------------------------------------------- HD95


def test_hd95_two_points_with_anisotropic_spacing():
    shape = (5, 5, 5)
    pred = _points(shape, (0, 0, 0))
    ref = _points(shape, (0, 0, 3))
    assert m.hd95(pred, ref, spacing=(1, 1, 2)) == pytest.approx(6.0)
    assert m.hd95(pred, ref, spacing=(1, 1, 1)) == pytest.approx(3.0)
    diag = _points(shape, (1, 2, 2))
    assert m.hd95(pred, diag, spacing=(1, 1, 2)) == pytest.approx(math.sqrt(1 + 4 + 16))


def test_hd95_is_the_larger_directed_percentile_with_linear_interpolation():
    shape = (6, 6, 6)
    ref = _points(shape, (0, 0, 0))
    # pred -> ref distances [0, 4] mm (two z voxels at 2 mm): P95 = 0.95 * 4; ref -> pred: [0].
    pred = _points(shape, (0, 0, 0), (0, 0, 2))
    assert m.hd95(pred, ref, spacing=(1, 1, 2)) == pytest.approx(3.8)
    assert m.hd95(ref, pred, spacing=(1, 1, 2)) == pytest.approx(3.8)  # symmetric
    pred_x = _points(shape, (0, 0, 0), (3, 0, 0))
    assert m.hd95(pred_x, ref, spacing=(1, 1, 2)) == pytest.approx(2.85)


def test_hd95_uses_surfaces_not_interiors():
    ref = np.zeros((9, 9, 9), dtype=bool)
    ref[1:8, 1:8, 1:8] = True
    pred = _points(ref.shape, (4, 4, 4))  # inside ref, yet 3 voxels from its surface
    assert m.hd95(ref, ref, spacing=1.0) == 0.0
    # Brute force: ref surface = the cube's outer shell; pred surface = the single voxel.
    shell = ref & ~ndimage.binary_erosion(ref)
    to_centre = np.linalg.norm((np.argwhere(shell) - 4) * np.array([1, 1, 2]), axis=1)
    pred_to_ref = 3.0  # nearest shell voxels are 3 x-steps or y-steps away (1 mm each)
    expected = max(pred_to_ref, float(np.percentile(to_centre, 95)))
    assert m.hd95(pred, ref, spacing=(1, 1, 2)) == pytest.approx(expected)
    # 2D works too (any ndim).
    assert m.hd95(_points((4, 4), (0, 0)), _points((4, 4), (3, 0)), spacing=(0.5, 1)) == 1.5


def test_hd95_cropping_does_not_change_the_result():
    rng = np.random.default_rng(0)
    a, b = _blob(rng, (40, 41, 20)), _blob(rng, (40, 41, 20))
    big_a = np.zeros((80, 90, 50), dtype=bool)
    big_b = np.zeros_like(big_a)
    big_a[20:60, 30:71, 10:30] = a
    big_b[20:60, 30:71, 10:30] = b
    sp = (0.9, 1.1, 2.5)
    assert m.hd95(big_a, big_b, spacing=sp) == pytest.approx(m.hd95(a, b, spacing=sp))


def test_hd95_distance_transform_and_kdtree_paths_agree(monkeypatch):
    rng = np.random.default_rng(3)
    shape = (60, 50, 30)
    pred, ref = _blob(rng, shape), _blob(rng, shape)
    pred[0, 0, 0] = pred[-1, -1, -1] = True  # stray false positives stretch the box
    sp = (0.9, 1.1, 2.5)
    monkeypatch.setattr(distance, "EDT_MAX_VOXELS", 10**9)
    by_edt = m.hd95(pred, ref, spacing=sp)
    monkeypatch.setattr(distance, "EDT_MAX_VOXELS", 0)
    by_tree = m.hd95(pred, ref, spacing=sp)
    assert by_tree == pytest.approx(by_edt, abs=1e-9)
    assert m.hd95(_points(shape, (0, 0, 0)), _points(shape, (0, 0, 3)), spacing=sp) == 7.5


def test_bad_inputs_raise_value_errors_naming_the_fix():
    with pytest.raises(ValueError, match="same voxel grid"):
        m.confusion(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="positive voxel sizes in mm"):
        m.hd95(np.ones((2, 2, 2)), np.ones((2, 2, 2)), spacing=(1, 1))
    with pytest.raises(ValueError, match="positive voxel sizes in mm"):
        m.volume_ml(np.ones((2, 2, 2)), (1, 0, 1))
    with pytest.raises(ValueError, match="empty-mask policy"):
        m.dice(m.Counts(0, 0, 0, 1), empty="zero")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- volumes, regions


def test_volumes_in_ml():
    mask = np.zeros((10, 10, 20), dtype=bool)
    mask[:, :, :10] = True  # 1000 voxels of 2 mm^3
    assert m.volume_ml(mask, (1, 1, 2)) == pytest.approx(2.0)
    half = mask.copy()
    half[:5] = False
    assert m.abs_volume_difference_ml(half, mask, spacing=(1, 1, 2)) == pytest.approx(1.0)


def test_region_metrics_on_labels_by_hand():
    ref = np.zeros((6, 6, 6), dtype=np.uint8)
    ref[1:5, 1:5, 1:5] = 2  # edema
    ref[2:4, 2:4, 2:4] = 3  # enhancing core
    pred = ref.copy()
    pred[2:4, 2:4, 2:4] = 1  # core called necrotic: WT perfect, TC = 0 overlap, ET missed
    res = m.region_metrics(pred, ref, spacing=(1, 1, 2))
    assert list(res) == ["WT", "TC", "ET", "label1", "label2", "label3"]
    assert list(res["WT"]) == list(m.METRIC_NAMES)
    assert res["WT"]["dice"] == 1.0 and res["WT"]["hd95_mm"] == 0.0
    assert res["TC"]["dice"] == 1.0  # NCR and ET both count as tumour core
    assert res["ET"]["dice"] == 0.0 and res["ET"]["recall"] == 0.0
    assert res["ET"]["hd95_mm"] == pytest.approx(m.image_diagonal_mm((6, 6, 6), (1, 1, 2)))
    assert res["label1"]["precision"] == 0.0
    assert res["label2"]["dice"] == 1.0
    assert res["ET"]["ref_volume_ml"] == pytest.approx(8 * 2 / 1000)
    assert res["ET"]["pred_volume_ml"] == 0.0
    assert res["ET"]["abs_volume_diff_ml"] == pytest.approx(0.016)
    assert res["ET"]["specificity"] == 1.0


def test_region_metrics_match_mask_metrics_and_binary_mode(rng):
    pred = rng.integers(0, 4, size=(12, 13, 9)).astype(np.uint8)
    ref = rng.integers(0, 4, size=(12, 13, 9)).astype(np.uint8)
    pred[:3] = 0
    ref[:, :3] = 0
    res = m.region_metrics(pred, ref, spacing=(1, 2, 3))
    for region, codes in REGIONS.items():
        direct = m.mask_metrics(np.isin(pred, codes), np.isin(ref, codes), spacing=(1, 2, 3))
        assert res[region] == pytest.approx(direct)
    binary = m.region_metrics(pred, ref, spacing=(1, 2, 3), regions=m.BINARY_REGIONS, labels=())
    assert list(binary) == ["tumour"]
    assert binary["tumour"] == pytest.approx(res["WT"])


def test_slice_metrics_along_the_axial_axis():
    ref = np.zeros((4, 4, 3), dtype=bool)
    pred = np.zeros_like(ref)
    ref[:2, :2, 0] = True  # slice 0: 4 voxels, prediction covers 2 of them
    pred[:2, 0, 0] = True
    pred[3, 3, 1] = True  # slice 1: false positive only; slice 2: both empty
    sm = m.slice_metrics(pred, ref, spacing=(1.0, 0.5, 3.0))
    np.testing.assert_allclose(sm["dice"], [4 / 6, 0.0, 1.0])
    np.testing.assert_allclose(sm["precision"], [1.0, 0.0, 1.0])
    np.testing.assert_allclose(sm["recall"], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(sm["tp"], [2, 0, 0])
    np.testing.assert_allclose(sm["ref_area_mm2"], [2.0, 0.0, 0.0])
    np.testing.assert_allclose(sm["pred_area_mm2"], [1.0, 0.5, 0.0])
    nan = m.slice_metrics(pred, ref, empty="nan")
    assert math.isnan(nan["dice"][2]) and "pred_area_mm2" not in nan
    np.testing.assert_allclose(m.slice_metrics(pred, ref, axis=0)["tp"], [1, 1, 0, 0])


# --------------------------------------------------------------------------- MONAI agreement


def _blob(rng: np.random.Generator, shape: tuple[int, ...], level: float = 0.6) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.5)
    return noise > level * noise.std()


def _monai(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance

    yp = torch.from_numpy(pred[None, None].astype(np.float32))
    y = torch.from_numpy(ref[None, None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = compute_dice(yp, y, include_background=True).item()
        h = compute_hausdorff_distance(
            yp, y, include_background=True, percentile=95, spacing=list(spacing)
        ).item()
    return d, h


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((33, 34, 35), (1.0, 1.0, 1.0)),
        ((33, 34, 35), (0.9, 1.1, 2.5)),
        ((40, 29, 17), (1.0, 1.0, 2.0)),
        ((64, 57), (0.7, 1.3)),
    ],
)
def test_dice_and_hd95_agree_with_monai_on_random_blobs(shape, spacing):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        pred, ref = _blob(rng, shape), _blob(rng, shape)
        assert pred.any() and ref.any()
        d_monai, h_monai = _monai(pred, ref, spacing)
        c = m.confusion(pred, ref)
        assert m.dice(c) == pytest.approx(d_monai, abs=1e-6)
        assert m.hd95(pred, ref, spacing=spacing) == pytest.approx(h_monai, abs=1e-3)


@functools.cache
def _read_encoded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from gliomaseg.io.nifti import read_label

    raw, affine = read_label(path)
    return BRATS2020.encode(raw), affine


def _tcga_cases(shared_data: Path) -> list[Path]:
    cases = sorted((shared_data / "brats_auto_labels").glob("TCGA-*"))
    if not cases:
        pytest.skip(f"no TCGA-* case under {shared_data / 'brats_auto_labels'}")
    return cases


@pytest.mark.realdata
@pytest.mark.parametrize("spacing", [None, (0.9, 1.1, 2.0)])
def test_real_tcga_isen20_vs_mav_agree_with_monai(shared_data, spacing):
    from gliomaseg.core.case import voxel_spacing

    for case in _tcga_cases(shared_data):
        pred, affine = _read_encoded(case / "brats2020_algorithms" / "isen-20.nii.gz")
        ref, _ = _read_encoded(case / "fusion" / "mav.nii.gz")
        sp = spacing or voxel_spacing(affine)
        res = m.region_metrics(pred, ref, spacing=sp)
        for region, codes in REGIONS.items():
            p, r = np.isin(pred, codes), np.isin(ref, codes)
            if not (p.any() or r.any()):  # MONAI gives NaN; BraTS: perfect
                assert res[region]["dice"] == 1.0 and res[region]["hd95_mm"] == 0.0
                continue
            d_monai, h_monai = _monai(p, r, sp)
            assert res[region]["dice"] == pytest.approx(d_monai, abs=1e-6), (case.name, region)
            assert res[region]["hd95_mm"] == pytest.approx(h_monai, abs=1e-3), (case.name, region)


def test_auroc_hand_cases():
    assert m.auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert m.auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert m.auroc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5  # ties count half
    # 3 positives x 2 negatives: pairs won 0 + 2 + 2 = 4 of 6
    assert m.auroc([0.3, 0.6, 0.7, 0.4, 0.5], [True, True, True, False, False]) == 4 / 6
    assert math.isnan(m.auroc([0.1, 0.2], [True, True]))
    with pytest.raises(ValueError, match="one label per score"):
        m.auroc([0.1, 0.2], [True])
