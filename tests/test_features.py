"""Tumour features in physical units, checked against values computed by hand."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from gliomaseg.core.laterality import laterality_from_fractions
from gliomaseg.explain.feature_docs import FEATURE_DOCS
from gliomaseg.explain.features import case_features, slice_features, write_features
from gliomaseg.explain.shape import eccentricity_2d, solidity_3d
from gliomaseg.synthetic.phantoms import make_case


def _disc(radius: float, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2.0
    return ((yy - c) ** 2 + (xx - c) ** 2 <= radius**2).astype(np.uint8)


def _one_slice(plane: np.ndarray, affine: np.ndarray | None = None) -> dict:
    return slice_features(plane[:, :, None], affine=np.eye(4) if affine is None else affine)[0]


def test_disc_compactness_near_one() -> None:
    row = _one_slice(_disc(20))
    assert row["compactness"] > 0.9
    assert row["area_mm2_WT"] == pytest.approx(np.count_nonzero(_disc(20)))
    assert row["perimeter_mm"] == pytest.approx(2 * math.pi * 20, rel=0.05)
    assert row["eccentricity"] < 0.1
    assert row["irregularity"] < 0.05
    assert row["n_components"] == 1


def test_square_compactness_near_pi_over_4() -> None:
    plane = np.zeros((64, 64), dtype=np.uint8)
    plane[12:52, 12:52] = 1
    row = _one_slice(plane)
    assert abs(row["compactness"] - math.pi / 4) < 0.05
    assert row["solidity"] == pytest.approx(1.0)
    assert row["eccentricity"] < 0.05


def test_anisotropic_pixels_use_physical_units() -> None:
    """A disc of radius 20 mm on 1 x 2 mm pixels is an ellipse in index space."""
    yy, xx = np.mgrid[:64, :64]
    plane = (((yy - 32) * 1.0) ** 2 + ((xx - 32) * 2.0) ** 2 <= 400).astype(np.uint8)
    row = _one_slice(plane, np.diag([1.0, 2.0, 3.0, 1.0]))
    assert row["pixel_area_mm2"] == 2.0
    assert row["area_mm2_WT"] == pytest.approx(math.pi * 400, rel=0.03)
    assert row["compactness"] > 0.9
    assert row["eccentricity"] < 0.25
    assert eccentricity_2d(plane.astype(bool), spacing=(1.0, 1.0)) > 0.8


def test_two_blobs_two_components() -> None:
    label = np.zeros((20, 20, 20), dtype=np.uint8)
    label[2:6, 2:6, 2:6] = 2
    label[12:16, 12:16, 12:16] = 3
    feats = case_features(label, affine=np.eye(4))
    assert feats["n_components"] == 2
    assert feats["n_components_major"] == 2
    rows = slice_features(label, affine=np.eye(4))
    assert rows[3]["n_components"] == 1 and rows[13]["n_components"] == 1
    # diagonal neighbours are one component with 26-connectivity (and 8 in 2D)
    diagonal = np.zeros((6, 6, 6), dtype=np.uint8)
    diagonal[1, 1, 1] = diagonal[2, 2, 2] = 1
    assert case_features(diagonal, affine=np.eye(4))["n_components"] == 1
    plane = np.zeros((6, 6, 1), dtype=np.uint8)
    plane[1, 1, 0] = plane[2, 2, 0] = 1
    assert slice_features(plane, affine=np.eye(4))[0]["n_components"] == 1


def test_speck_is_a_component_but_not_major() -> None:
    label = np.zeros((30, 30, 30), dtype=np.uint8)
    label[5:20, 5:20, 5:20] = 2
    label[27, 27, 27] = 2
    feats = case_features(label, affine=np.eye(4))
    assert feats["n_components"] == 2
    assert feats["n_components_major"] == 1


def test_box_volume_with_anisotropic_spacing() -> None:
    spacing = (0.5, 1.2, 3.0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-40.0, 12.0, 7.0)
    label = np.zeros((30, 20, 12), dtype=np.uint8)
    label[4:14, 3:11, 2:7] = 2  # 10 x 8 x 5 voxels of edema
    label[6:10, 5:9, 3:5] = 1  # 4 x 4 x 2 necrotic voxels inside
    feats = case_features(label, affine=affine)
    voxel_mm3 = 0.5 * 1.2 * 3.0
    assert feats["voxel_volume_ml"] == pytest.approx(voxel_mm3 / 1000)
    assert feats["volume_ml_WT"] == pytest.approx(400 * voxel_mm3 / 1000)
    assert feats["volume_ml_NCR"] == pytest.approx(32 * voxel_mm3 / 1000)
    assert feats["volume_ml_ED"] == pytest.approx(368 * voxel_mm3 / 1000)
    assert feats["volume_ml_TC"] == pytest.approx(feats["volume_ml_NCR"])
    assert feats["volume_ml_ET"] == 0.0
    assert feats["proportion_NCR"] + feats["proportion_ED"] + feats["proportion_ET"] == 1.0
    assert feats["extent_mm"] == pytest.approx([5.0, 9.6, 15.0])
    assert feats["n_slices"] == 5 and feats["height_mm"] == pytest.approx(15.0)
    assert feats["solidity"] == pytest.approx(1.0)
    assert feats["centroid_mm"] == pytest.approx(
        list(affine[:3, :3] @ np.array([8.5, 6.5, 4.0]) + affine[:3, 3])
    )
    rows = slice_features(label, affine=affine, indices=[3])
    assert rows[0]["area_mm2_WT"] == pytest.approx(80 * 0.5 * 1.2)
    assert rows[0]["area_mm2_NCR"] == pytest.approx(16 * 0.5 * 1.2)


def _lateral_label() -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((40, 30, 20), dtype=np.uint8)
    label[4:12, 10:18, 6:12] = 2
    brain = np.zeros(label.shape, dtype=bool)
    brain[1:39, 1:29, 1:19] = True
    return label, brain


def test_laterality_follows_the_affine_not_array_order() -> None:
    label, brain = _lateral_label()
    ras = np.diag([1.0, 1.0, 2.0, 1.0])
    ras[:3, 3] = (-19.5, -20.0, 0.0)  # brain centred on x = 0
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0]) @ ras  # same array, scanner x mirrored
    left = case_features(label, affine=ras, brain_mask=brain)
    right = case_features(label, affine=flipped, brain_mask=brain)
    # low index with +x = Right means low scanner x: the patient's left
    assert left["laterality"] == "left" and left["left_fraction"] == 1.0
    assert right["laterality"] == "right" and right["right_fraction"] == 1.0
    assert left["offset_from_midline_mm"] == pytest.approx(-right["offset_from_midline_mm"])
    assert left["position_in_brain"][0] < 0.5 < right["position_in_brain"][0]
    for affine, side in ((ras, "left"), (flipped, "right")):
        row = slice_features(label, affine=affine, brain_mask=brain, indices=[8])[0]
        assert row["laterality"] == side


def test_midline_and_bilateral() -> None:
    _, brain = _lateral_label()
    affine = np.eye(4)
    affine[0, 3] = -19.5
    middle = np.zeros(brain.shape, dtype=np.uint8)
    middle[17:23, 10:16, 8:12] = 3
    assert case_features(middle, affine=affine, brain_mask=brain)["laterality"] == "midline"
    both = np.zeros(brain.shape, dtype=np.uint8)
    both[3:10, 10:16, 8:12] = 2
    both[30:37, 10:16, 8:12] = 2
    feats = case_features(both, affine=affine, brain_mask=brain)
    assert feats["laterality"] == "bilateral"
    assert laterality_from_fractions(0.7, 0.2, 0.1) == "left"
    assert laterality_from_fractions(0.0, 0.0, 0.0) is None


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_synthetic_hemisphere_matches(seed: int) -> None:
    """Phantom cases record their tumour's hemisphere in world space (affine flips axis 0)."""
    case = make_case(rng=np.random.default_rng(seed), template="phantom")
    feats = case_features(case.label, affine=case.affine, image=case.stack())
    assert feats["brain_reference"] == "image"
    assert feats["laterality"] == case.hemisphere
    assert feats["centroid_mm"][0] == pytest.approx(case.tumour_centre_mm[0], abs=2.0)
    assert 0.0 <= min(feats["position_in_brain"]) <= max(feats["position_in_brain"]) <= 1.0
    assert 0.0 < feats["brain_fraction"] < 1.0
    assert feats["et_rim_fraction"] == pytest.approx(1.0)  # nested spheres: ET wraps NCR


def test_solidity_separates_ball_from_c_shape() -> None:
    g = np.arange(25) - 12
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    ball = x**2 + y**2 + z**2 <= 100
    assert solidity_3d(ball) > 0.9
    c_shape = np.zeros((30, 30, 6), dtype=bool)
    c_shape[2:28, 2:8] = c_shape[2:8, 2:28] = c_shape[22:28, 2:28] = True
    assert 1.0 - solidity_3d(c_shape) > 0.3  # type: ignore[operator]
    assert solidity_3d(np.zeros((3, 3, 3), dtype=bool)) is None


def test_empty_mask_never_errors() -> None:
    label = np.zeros((8, 9, 10), dtype=np.uint8)
    feats = case_features(label, affine=np.eye(4))
    assert feats["empty"] and feats["volume_ml_WT"] == 0.0 and feats["n_components"] == 0
    for key in ("solidity", "irregularity", "centroid_mm", "laterality", "position_in_brain"):
        assert feats[key] is None
    assert feats["extent_mm"] == [0.0, 0.0, 0.0]
    assert feats["proportion_NCR"] == 0.0
    row = slice_features(label, affine=np.eye(4), indices=[0])[0]
    assert row["area_mm2_WT"] == 0.0 and row["perimeter_mm"] == 0.0
    assert row["compactness"] is None and row["eccentricity"] is None


def test_binary_masks_have_no_compartments() -> None:
    label = np.zeros((10, 10, 10), dtype=np.uint8)
    label[2:5, 2:5, 2:5] = 1
    feats = case_features(label, affine=np.eye(4), binary=True)
    assert feats["volume_ml_WT"] == pytest.approx(0.027)
    assert feats["volume_ml_NCR"] is None and feats["proportion_ED"] is None
    assert feats["et_rim_fraction"] is None


def test_every_feature_is_documented() -> None:
    label, brain = _lateral_label()
    keys = set(case_features(label, affine=np.eye(4), brain_mask=brain))
    keys |= set(slice_features(label, affine=np.eye(4), indices=[8])[0])
    assert keys <= set(FEATURE_DOCS), keys - set(FEATURE_DOCS)


def test_bad_inputs_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="3D"):
        case_features(np.zeros((4, 4), dtype=np.uint8), affine=np.eye(4))
    with pytest.raises(ValueError, match="integer"):
        case_features(np.zeros((4, 4, 4), dtype=np.float32), affine=np.eye(4))
    with pytest.raises(ValueError, match="brain mask shape"):
        case_features(
            np.zeros((4, 4, 4), dtype=np.uint8), affine=np.eye(4), brain_mask=np.ones((3, 3, 3))
        )
    with pytest.raises(ValueError, match="affine"):
        case_features(np.zeros((4, 4, 4), dtype=np.uint8), affine=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="out of range"):
        slice_features(np.zeros((4, 4, 4), dtype=np.uint8), affine=np.eye(4), indices=[9])


def test_write_features_json_and_csv(tmp_path) -> None:
    label, brain = _lateral_label()
    feats = case_features(label, affine=np.eye(4), brain_mask=brain)
    json_path, csv_path = write_features(feats, tmp_path / "out")
    loaded = json.loads(json_path.read_text())
    assert loaded["features"]["volume_ml_WT"] == pytest.approx(feats["volume_ml_WT"])
    assert set(loaded["docs"]) == set(feats)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 1
    assert float(rows[0]["centroid_mm_x"]) == pytest.approx(feats["centroid_mm"][0])
    assert rows[0]["laterality"] == feats["laterality"]
    slices = slice_features(label, affine=np.eye(4), brain_mask=brain)
    _, csv_slices = write_features(slices, tmp_path / "out", stem="slices")
    assert len(list(csv.DictReader(csv_slices.open()))) == label.shape[2]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
