"""Postprocessing at real thresholds: component and ET volumes in mL from the voxel spacing."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from gliomaseg.core.labels import ED, ET, NCR
from gliomaseg.core.targets import TARGETS
from gliomaseg.io.layouts import discover, read_case
from gliomaseg.io.outdir import OutputFolder
from gliomaseg.io.writers import write_layout
from gliomaseg.segment import workflow as seg_mod
from gliomaseg.segment.config import SegmentConfig
from gliomaseg.segment.models import Segmenter
from gliomaseg.segment.postprocess import SKIPPED_2D, PostprocessConfig, postprocess
from gliomaseg.synthetic.phantoms import make_case

SPACING = (1.0, 1.5, 2.0)  # 3 mm^3 = 0.003 mL per voxel
VOXEL_ML = 0.003


def _label(shape: tuple[int, ...]) -> np.ndarray:
    """Internal codes with four whole-tumour components (sizes at 0.003 mL per voxel):

    * big: 6 x 6 x 4 = 144 voxels (0.432 mL), ED around an 8-voxel ET core (0.024 mL);
    * small: 10 voxels (0.030 mL);
    * medium: 11 voxels (0.033 mL);
    * pair: two 6-voxel blocks touching only at a corner, one 26-connected component of
      12 voxels (0.036 mL; each block alone would be 0.018 mL).
    """
    label = np.zeros(shape, dtype=np.uint8)
    label[4:10, 4:10, 2:6] = ED
    label[6:8, 6:8, 3:5] = ET
    label[20:22, 20:25, 10] = ED
    label[20:22, 20:25, 14] = ED
    label[22, 20, 14] = ED
    label[26:28, 4:7, 17] = ED
    label[28:30, 7:10, 18] = ED  # (27, 6, 17) and (28, 7, 18) share a corner only
    return label


def test_label_fixture_has_the_documented_components() -> None:
    from scipy import ndimage

    label = _label((32, 32, 20))
    comps, n = ndimage.label(label > 0, structure=np.ones((3, 3, 3)))
    assert n == 4
    assert sorted(np.bincount(comps.ravel())[1:].tolist()) == [10, 11, 12, 144]
    assert ndimage.label(label > 0)[1] == 5  # face connectivity splits the pair
    assert (label == ET).sum() == 8


@pytest.mark.parametrize(
    ("config", "removed", "relabelled"),
    [
        # just above the small component (0.030) and the ET volume (0.024): both go
        (PostprocessConfig(min_component_ml=0.0315, et_to_ncr_below_ml=0.025), 1, 8),
        # just below them: everything stays
        (PostprocessConfig(min_component_ml=0.0285, et_to_ncr_below_ml=0.023), 0, 0),
        (PostprocessConfig(), 0, 0),
    ],
)
def test_postprocess_thresholds_in_ml(
    config: PostprocessConfig, removed: int, relabelled: int
) -> None:
    label = _label((32, 32, 20))
    out, record = postprocess(label, voxel_ml=VOXEL_ML, config=config)
    removed_ml = 10 * VOXEL_ML * removed  # the removed component has 10 voxels
    assert record == {
        **config.to_dict(),
        "applied": config != PostprocessConfig(),
        "skipped": None,
        "components_removed": removed,
        "wt_before_ml": pytest.approx(177 * VOXEL_ML),
        "removed_ml": pytest.approx(removed_ml),
        "removed_fraction": pytest.approx(removed_ml / (177 * VOXEL_ML)),
        "et_relabelled_voxels": relabelled,
    }
    expected = label.copy()
    if removed:
        expected[20:22, 20:25, 10] = 0
    if relabelled:
        expected[expected == ET] = NCR
    np.testing.assert_array_equal(out, expected)
    assert (label == _label((32, 32, 20))).all()  # the input is not modified


def test_postprocess_without_enhancing_tumour_relabels_nothing() -> None:
    label = _label((32, 32, 20))
    label[label == ET] = ED
    out, record = postprocess(
        label, voxel_ml=VOXEL_ML, config=PostprocessConfig(et_to_ncr_below_ml=10.0)
    )
    assert record["et_relabelled_voxels"] == 0
    np.testing.assert_array_equal(out, label)


@pytest.mark.parametrize(
    ("flags", "counts", "removed"),
    [
        # 0.0315 mL: the 10-voxel component (0.030 mL) goes, 11 voxels (0.033 mL) stay; ET
        # (0.024 mL) is below 0.025 mL and becomes NCR. At 1 mm^3 voxels every small
        # component would have gone.
        ((0.0315, 0.025), {1: 8, 2: 136 + 11 + 12, 4: 0}, 1),
        ((0.0285, 0.023), {1: 0, 2: 136 + 10 + 11 + 12, 4: 8}, 0),
    ],
)
def test_segment_postprocessing_uses_the_case_spacing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[float, float],
    counts: dict[int, int],
    removed: int,
) -> None:
    synth = make_case(
        rng=np.random.default_rng(3),
        case_id="BraTS2021_00100",
        template="phantom",
        shape=(32, 32, 20),
        spacing=SPACING,
        flip_axis=0,
    )
    write_layout(synth, tmp_path / "in", layout="brats2020")
    (ref,), _ = discover(tmp_path / "in")
    case = read_case(ref, with_label=False)
    assert case.voxel_volume_ml == pytest.approx(VOXEL_ML)
    label = _label(case.shape)

    def fake_predict(
        case_: object, seg: object, config: object, **_: object
    ) -> tuple[np.ndarray, np.ndarray]:
        return label.copy(), _region_probs(label)

    monkeypatch.setattr(seg_mod, "predict_case", fake_predict)
    segmenter = Segmenter(
        model=torch.nn.Identity(),
        target=TARGETS["regions"],
        modalities=("flair", "t1", "t1ce", "t2"),
        context=0,
        multiple=1,
        spatial_dims=2,
        roi_size=(),
        device=torch.device("cpu"),
        source="fake",
        meta={},
    )
    config = SegmentConfig(postprocess=PostprocessConfig(*flags))
    summary = seg_mod.segment_case(ref, OutputFolder(tmp_path / "out"), segmenter, config)
    assert summary["postprocessing"]["components_removed"] == removed
    assert summary["postprocessing"]["et_relabelled_voxels"] == counts[1]  # no NCR before
    assert summary["voxel_volume_ml"] == pytest.approx(VOXEL_ML)
    raw = np.asarray(nib.load(tmp_path / "out" / "BraTS2021_00100_seg.nii.gz").dataobj)
    assert {v: int((raw == v).sum()) for v in (1, 2, 4)} == counts
    assert summary["volumes_ml"]["WT"] == pytest.approx(sum(counts.values()) * VOXEL_ML)
    assert summary["volumes_ml"]["ET"] == pytest.approx(counts[4] * VOXEL_ML)


def _region_probs(label: np.ndarray) -> np.ndarray:
    """(3, X, Y, Z) 0/1 WT, TC, ET probabilities of internal codes."""
    return np.stack([label > 0, np.isin(label, (NCR, ET)), label == ET]).astype(np.float32)


# ------------------------------------------------------------------ 2D input: no volume


def test_one_slice_is_not_filtered_and_a_volume_is() -> None:
    """The model card's 10 mL rule removes a whole tumour seen in one slice; not any more.

    A 30 x 30 pixel tumour with an 8-pixel ET core at 1 mm^3 is 0.9 mL in one slice: under
    10 mL (and ET under 1 mL), yet it is all the slice shows. Stacked into 20 slices it is a
    18 mL volume next to a 0.9 mL speck that the rule does remove.
    """
    config = PostprocessConfig(min_component_ml=10.0, et_to_ncr_below_ml=1.0)
    plane = np.zeros((64, 64), dtype=np.uint8)
    plane[10:40, 10:40] = ED
    plane[20:22, 20:24] = ET
    for shape in ((64, 64, 1), (1, 64, 64)):  # a slice, whichever axis is the thin one
        label = plane.reshape(shape)
        out, record = postprocess(label, voxel_ml=0.001, config=config)
        np.testing.assert_array_equal(out, label)
        assert record["skipped"] == SKIPPED_2D and record["applied"] is False
        assert record["skipped"].startswith("skipped: 2D input")
        assert record["components_removed"] == record["et_relabelled_voxels"] == 0
        assert record["min_component_ml"] == 10.0  # what the card asked for, still recorded

    volume = np.repeat(plane[:, :, None], 20, axis=2)
    volume[50:53, 50:53, 5:15] = ED  # 90 voxels: 0.09 mL, a speck to remove
    out, record = postprocess(volume, voxel_ml=0.001, config=config)
    assert record["applied"] is True and record["skipped"] is None
    assert record["components_removed"] == 1
    assert not out[50:53, 50:53].any() and (out[10:40, 10:40] > 0).all()
    assert record["et_relabelled_voxels"] == 160  # 0.16 mL of ET, under 1 mL: now NCR
    assert not (out == ET).any()
