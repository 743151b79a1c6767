"""Case report: the postprocessing warning and the scores against a ``--reference`` (issue 15).

Synthetic segment outputs, built here: a summary whose ``postprocessing`` record comes from
:func:`gliomaseg.segment.postprocess.postprocess` itself, and label maps with a hand-computable
overlap.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.core.labels import ED, ET, NCR
from gliomaseg.io.atomic import write_json_atomic
from gliomaseg.io.nifti import write_nifti
from gliomaseg.report import build_case_report
from gliomaseg.report.checks import MAX_REMOVED_FRACTION, postprocessing_warnings
from gliomaseg.segment.postprocess import PostprocessConfig, postprocess, region_volumes

AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 40.0], [0.0, 1.0, 0.0, -20.0], [0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, 1.0]]
)
VOXEL_ML = 0.002  # 1 x 1 x 2 mm


def _section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{re.escape(key)}".*?</section>', page, re.S)
    assert match, f"section {key} missing"
    return match.group(0)


def _summary(case_id: str, label: np.ndarray, record: dict) -> dict:
    return {
        "case_id": case_id,
        "layout": "nifti-file",
        "inputs": {},
        "spacing_mm": [1.0, 1.0, 2.0],
        "spacing_known": True,
        "voxel_volume_ml": VOXEL_ML,
        "volumes_ml": region_volumes(label, VOXEL_ML),
        "postprocessing": record,
        "label_scheme": "brats2020",
    }


def _specks(n: int) -> np.ndarray:
    """A 1000-voxel tumour and ``n`` single-voxel specks far from it and from each other."""
    label = np.zeros((40, 40, 20), dtype=np.uint8)
    label[5:15, 5:15, 2:12] = ED
    spots = [(x, y, z) for x in range(20, 40, 2) for y in range(20, 40, 2) for z in range(0, 20, 2)]
    for spot in spots[:n]:
        label[spot] = ED
    return label


@pytest.mark.parametrize(("n_specks", "warned"), [(400, True), (20, False)])
def test_report_warns_when_postprocessing_removed_much_of_the_prediction(
    tmp_path: Path, n_specks: int, warned: bool
) -> None:
    raw = _specks(n_specks)
    cleaned, record = postprocess(
        raw, voxel_ml=VOXEL_ML, config=PostprocessConfig(min_component_ml=0.5)
    )
    assert record["components_removed"] == n_specks
    assert record["removed_fraction"] == pytest.approx(n_specks / (1000 + n_specks))
    write_json_atomic(tmp_path / "c1_summary.json", _summary("c1", cleaned, record))
    report = build_case_report(tmp_path)
    lines = [w for w in report.warnings if w.startswith("postprocessing removed")]
    section = _section(report.html, "warnings")
    if warned:
        (line,) = lines
        assert f"{100 * n_specks / (1000 + n_specks):.0f}% of the predicted whole tumour" in line
        assert f"{n_specks} connected components under 0.5 mL" in line
        assert f"warning from {100 * MAX_REMOVED_FRACTION:.0f}%" in line
        assert "postprocessing removed" in section and "No warnings." not in section
    else:
        assert lines == []


def test_postprocessing_record_of_an_older_summary() -> None:
    """The issue's case: 133 components removed, recorded without their volume."""
    summary = {"postprocessing": {"min_component_ml": 10.0, "components_removed": 133}}
    (line,) = postprocessing_warnings(summary)
    assert "133 connected components under 10 mL" in line and "re-run" in line
    assert postprocessing_warnings({"postprocessing": {"components_removed": 0}}) == []
    assert postprocessing_warnings({}) == []


def _write_labels(path: Path, codes: np.ndarray) -> Path:
    """Internal codes written as a BraTS 2020 label NIfTI (ET is 4 on disk)."""
    raw = codes.copy()
    raw[codes == ET] = 4
    write_nifti(path, raw, AFFINE)
    return path


def test_report_scores_the_prediction_against_a_reference(tmp_path: Path) -> None:
    shape = (30, 30, 16)
    reference = np.zeros(shape, dtype=np.uint8)
    reference[5:15, 5:15, 3:13] = ED  # 1000 voxels
    reference[8:12, 8:12, 6:10] = NCR  # 64-voxel core, no enhancing tumour
    prediction = np.zeros(shape, dtype=np.uint8)
    prediction[7:17, 5:15, 3:13] = ED  # the same cube moved 2 voxels: 800 in common
    prediction[10:14, 8:12, 6:10] = NCR
    _write_labels(tmp_path / "c1_seg.nii.gz", prediction)
    ref_path = _write_labels(tmp_path / "ref.nii.gz", reference)
    record = postprocess(prediction, voxel_ml=VOXEL_ML, config=PostprocessConfig())[1]
    write_json_atomic(tmp_path / "c1_summary.json", _summary("c1", prediction, record))

    report = build_case_report(tmp_path, reference=ref_path)
    scores = report.reference_scores
    assert scores is not None and list(scores) == ["WT", "TC", "ET"]
    assert scores["WT"]["dice"] == pytest.approx(2 * 800 / 2000)
    assert scores["TC"]["dice"] == pytest.approx(2 * 32 / 128)
    assert 0.0 < scores["WT"]["hd95_mm"] <= 2.0  # nothing is more than 2 voxels (2 mm) off
    assert scores["ET"]["dice"] == 1.0 and scores["ET"]["hd95_mm"] == 0.0  # both empty
    assert scores["WT"]["pred_volume_ml"] == pytest.approx(1000 * VOXEL_ML)
    assert scores["WT"]["ref_volume_ml"] == pytest.approx(1000 * VOXEL_ML)
    volumes = _section(report.html, "volumes")
    assert "Agreement with the reference" in volumes
    assert "HD95 (mm)" in volumes and ">0.800<" in volumes and ">0.500<" in volumes
    assert "both masks are empty" in volumes  # the empty-mask policy is stated
    assert "Dice, HD95" in _section(report.html, "overview")
    assert build_case_report(tmp_path).reference_scores is None


def test_report_reads_a_2d_segmentation_and_its_2d_inputs_as_one_slice(tmp_path: Path) -> None:
    """Single-slice exports: the mask, the images and the reference read as (X, Y, 1)
    (gliomaseg.io.labelmap's policy), so a 2D case gets a report like a 3D one."""
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    label = np.zeros((30, 24), dtype=np.uint8)
    label[10:20, 8:16] = 2
    label[13:17, 10:14] = 4
    write_nifti(tmp_path / "c2_seg.nii.gz", label, affine)
    reference = label.copy()
    reference[10:12] = 0
    write_nifti(tmp_path / "ref.nii.gz", reference, affine)
    image = np.where(np.ones_like(label, dtype=bool), 100.0, 0.0).astype(np.float32)
    image[label > 0] = 300.0
    inputs = {}
    for name in ("flair", "t1", "t1ce", "t2"):
        write_nifti(tmp_path / f"c2_{name}.nii.gz", image, affine)
        inputs[name] = str(tmp_path / f"c2_{name}.nii.gz")
    summary = _summary("c2", label[..., None], {"components_removed": 0})
    summary.update(
        inputs=inputs,
        spacing_mm=[1.0, 1.0, 1.0],
        slices=[{"slice": "0", "index": 0, "max_tumour_probability": 0.9}],
        flagged_slices=["0"],
    )
    write_json_atomic(tmp_path / "c2_summary.json", summary)
    report = build_case_report(tmp_path, reference=tmp_path / "ref.nii.gz", viewer=False)
    assert "not shown" not in report.html
    assert 'alt="1 flagged axial slices of each modality' in _section(report.html, "slices")
    scores = report.reference_scores
    assert scores is not None
    assert scores["WT"]["dice"] == pytest.approx(2 * 64 / (80 + 64))
