"""One notion of "which side", orientation-unknown inputs, LGG orientation, model axes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile

from gliomaseg.core.case import Case
from gliomaseg.core.geometry import orientation_code, reorient, reorient_affine, to_canonical
from gliomaseg.core.laterality import UNKNOWN_ORIENTATION_NOTE, brain_reference, tumour_side
from gliomaseg.explain.features import case_features, slice_features
from gliomaseg.io.cache import case_axes, network_axes
from gliomaseg.io.layouts import read_case
from gliomaseg.io.tiff import LGG_AXES, lgg_affine
from gliomaseg.report.figures import display_slice
from gliomaseg.segment.postprocess import tumour_geometry
from gliomaseg.synthetic.phantoms import SyntheticCase, make_case

SHAPE = (40, 30, 6)


@pytest.fixture
def phantom() -> SyntheticCase:
    """A small case whose affine flips an axis (so array order is not patient order)."""
    return make_case(
        rng=np.random.default_rng(7), case_id="case1", template="phantom", shape=(20, 22, 18)
    )


def _brain_and_tumour(x_lo: int, x_hi: int, tumour_x: slice) -> tuple[np.ndarray, np.ndarray]:
    brain = np.zeros(SHAPE, bool)
    brain[x_lo:x_hi, 5:25, :] = True
    label = np.zeros(SHAPE, np.uint8)
    label[tumour_x, 12:16, 2:4] = 2
    return brain, label


def test_side_is_relative_to_the_brain_midline_not_scanner_zero() -> None:
    # RAS+ grid whose x runs 100..139 mm: scanner x = 0 lies outside the head, so a
    # "x > 0 is right" rule would call every tumour right.
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[0, 3] = 100.0
    brain, label = _brain_and_tumour(0, 40, slice(4, 9))  # brain centre x = 119.5; tumour ~106
    side = tumour_side(label, affine, brain_mask=brain)
    assert side["laterality"] == "left" and side["offset_from_midline_mm"] < -5
    assert side["midline_x_mm"] == pytest.approx(119.5)
    # summary.json, explain (case and slice) and the function agree: one definition.
    summary = tumour_geometry(label, affine, brain=brain)
    feats = case_features(label, affine=affine, brain_mask=brain)
    rows = slice_features(label, affine=affine, brain_mask=brain, indices=[2])
    assert summary["hemisphere"] == feats["laterality"] == rows[0]["laterality"] == "left"


@pytest.mark.parametrize(
    ("tumour_x", "expected"),
    [(slice(30, 36), "right"), (slice(18, 22), "midline"), (slice(8, 32), "bilateral")],
)
def test_summary_and_features_agree_on_every_side(tumour_x: slice, expected: str) -> None:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    brain, label = _brain_and_tumour(0, 40, tumour_x)
    summary = tumour_geometry(label, affine, brain=brain)
    feats = case_features(label, affine=affine, brain_mask=brain)
    assert summary["hemisphere"] == feats["laterality"] == expected


def test_flipped_axis_keeps_the_patient_side() -> None:
    brain, label = _brain_and_tumour(0, 40, slice(30, 36))
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 39.0  # same scanner positions, array axis 0 reversed
    a = tumour_side(label, np.eye(4), brain_mask=brain)["laterality"]
    b = tumour_side(label[::-1], flipped, brain_mask=brain[::-1])["laterality"]
    assert a == b == "right"


def test_orientation_unknown_gives_no_side_anywhere() -> None:
    brain, label = _brain_and_tumour(0, 40, slice(30, 36))
    side = tumour_side(label, np.eye(4), brain_mask=brain, orientation_known=False)
    assert side["laterality"] is None and side["laterality_note"] == UNKNOWN_ORIENTATION_NOTE
    summary = tumour_geometry(label, np.eye(4), brain=brain, orientation_known=False)
    assert summary["hemisphere"] is None and summary["hemisphere_note"] == UNKNOWN_ORIENTATION_NOTE
    feats = case_features(label, affine=np.eye(4), brain_mask=brain, orientation_known=False)
    assert feats["laterality"] is None and feats["position_in_brain"] is None
    assert feats["left_fraction"] is None and feats["offset_from_midline_mm"] is None


def test_noisy_background_uses_the_bright_head_for_the_midline() -> None:
    """LGG-like: no zero background; the head sits off-centre in the field of view."""
    rng = np.random.default_rng(0)
    image = rng.uniform(1.0, 10.0, size=(1, *SHAPE)).astype(np.float32)  # noise, never 0
    image[0, 20:38, 5:25, :] = 200.0  # the head: x 20..37, centre 28.5 (field centre 19.5)
    brain, how = brain_reference(SHAPE, None, image)
    assert how == "foreground" and brain is not None
    label = np.zeros(SHAPE, np.uint8)
    label[20:23, 10:14, 2] = 1  # left of the head's midline, right of the field's centre
    side = tumour_side(label, np.eye(4), image=image)
    assert side["midline_x_mm"] == pytest.approx(28.5, abs=0.5)
    assert side["laterality"] == "left"


def _write_tiffs(folder, rgb: np.ndarray, mask: np.ndarray) -> None:
    folder.mkdir(parents=True)
    name = folder.name
    for n in range(rgb.shape[2]):
        tifffile.imwrite(folder / f"{name}_{n + 1}.tif", rgb[:, :, n], photometric="rgb")
        tifffile.imwrite(folder / f"{name}_{n + 1}_mask.tif", mask[:, :, n])


def test_lgg_rows_are_anterior_to_posterior_and_columns_right_to_left(tmp_path) -> None:
    """A mark in the TIFFs' top-left corner is anterior and on the patient's right."""
    rows, cols, n = 20, 16, 3
    rgb = np.full((rows, cols, n, 3), 50, np.uint8)
    mask = np.zeros((rows, cols, n), np.uint8)
    mask[1:4, 1:4, 0] = 255  # top-left of slice 1
    _write_tiffs(tmp_path / "TCGA_CS_0000_20000101", rgb, mask)
    case = read_case(tmp_path / "TCGA_CS_0000_20000101")
    assert orientation_code(case.source_affine) == LGG_AXES == "PLS"
    assert orientation_code(case.affine) == "RAS" and case.shape == (cols, rows, n)
    assert case.label is not None
    centre = (case.affine @ [*np.argwhere(case.label).mean(axis=0), 1.0])[:3]
    field = (case.affine @ [*(np.array(case.shape) - 1) / 2.0, 1.0])[:3]
    assert centre[0] > field[0]  # patient right (+x)
    assert centre[1] > field[1]  # anterior (+y)
    assert centre[2] < field[2]  # slice 1 is the most inferior
    # The report panel shows it where the TIFF had it: top-left (anterior, patient right).
    shown = display_slice(case.label[:, :, 0])
    assert shown.shape == (rows, cols) and shown[2, 2] and not shown[-3, -3]
    # And to_source gives the TIFF order back exactly.
    np.testing.assert_array_equal(case.to_source(case.label), (mask > 0).astype(np.uint8))


def test_nifti_without_qform_or_sform_is_orientation_unknown(tmp_path, phantom) -> None:
    from gliomaseg.io.segmentation import write_segmentation

    folder = tmp_path / "case1"
    folder.mkdir()
    for m in ("flair", "t1", "t1ce", "t2"):
        img = nib.Nifti1Image(phantom.images[m], phantom.affine)
        img.set_qform(None, code=0)
        img.set_sform(None, code=0)
        nib.save(img, folder / f"case1_{m}.nii.gz")
    case = read_case(folder)
    assert not case.orientation_known and "unknown" in case.meta["orientation"]
    out = write_segmentation(case, np.zeros(case.shape, np.uint8), tmp_path / "seg.nii.gz")
    header = nib.load(out).header
    assert int(header["qform_code"]) == int(header["sform_code"]) == 0  # claims none either
    assert read_case(folder.parent / "case1").orientation_known is False


def test_model_axes_legacy_rule_and_round_trip() -> None:
    assert network_axes({"modalities": ["t1", "flair", "t1ce"]}) == "PLS"  # bundled lgg model
    assert network_axes({"modalities": ["flair", "t1", "t1ce", "t2"]}) == "RAS"
    assert (
        network_axes({"modalities": ["t1", "flair", "t1ce"], "preprocessing": {"axes": "RAS"}})
        == "RAS"
    )
    assert case_axes({"layout": "lgg-tiff"}) == "PLS"  # caches prepared before the record
    assert case_axes({"layout": "lgg-tiff", "axes": "RAS"}) == "RAS"
    # Canonical -> the legacy LGG frame is exactly the TIFF order, and back.
    tiff_order = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    affine = lgg_affine((1.0, 1.0, 1.0))
    canonical, canonical_affine = to_canonical(tiff_order, affine)
    np.testing.assert_array_equal(reorient(canonical, "RAS", "PLS"), tiff_order)
    np.testing.assert_allclose(
        reorient_affine(canonical_affine, canonical.shape, "RAS", "PLS"), affine
    )


def test_network_view_feeds_a_legacy_model_the_tiff_order(phantom) -> None:
    from gliomaseg.segment.workflow import network_view

    raw = np.stack([phantom.images[m] for m in ("flair", "t1", "t1ce")])
    image, affine = to_canonical(raw, phantom.affine)
    case = Case("c", image, ("flair", "t1", "t1ce"), None, affine, None, "test")
    view = network_view(case, "PLS")
    assert view.image is not None and orientation_code(view.affine) == "PLS"
    np.testing.assert_array_equal(reorient(view.image, "PLS", "RAS"), image)
    assert network_view(case, "RAS") is case
