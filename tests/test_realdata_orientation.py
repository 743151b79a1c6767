"""Orientation and side of the tumour on every labelled real case we have, in every layout.

Two checks, both on ../shared/data (and on ~/gliomaseg-data when it is there):

* **Side.** gliomaseg's side of the tumour (:func:`gliomaseg.core.laterality.tumour_side`, what
  ``summary.json``, ``explain`` and the report say) agrees with a side computed here
  independently from the label and the brain: per axial slice, the midline is the centre of
  the brain's left-right extent in scanner x, and each tumour voxel is counted left or right
  of it. Where that reference is clear (:data:`CLEAR` of the tumour on one side) gliomaseg
  must name that side; where it is not, gliomaseg must not name the minority side. For the
  LGG TIFFs, whose left-right convention cannot be read from anatomy, the clinical laterality
  in the dataset's ``data.csv`` is a second, fully independent reference.
* **Markers.** Figures put "A" at the top, "P" at the bottom, "R" on the left, "L" on the
  right of :func:`gliomaseg.report.figures.display_slice` panels; the anatomy must be there:
  the head is mirror-symmetric about the vertical (A-P) line of the panel, not the horizontal
  one, and the cerebellum (the lowest quarter of a skull-stripped brain) lies towards "P".

Only reading and the side computation run here (no model), so the checks are quick.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.core.case import Case
from gliomaseg.core.laterality import tumour_side
from gliomaseg.explain.features import case_features
from gliomaseg.io.layouts import find_cases, read_case
from gliomaseg.report.figures import ORIENTATION_MARKS, display_slice
from gliomaseg.segment.postprocess import tumour_geometry

pytestmark = pytest.mark.realdata

#: Share of the tumour on one side of the reference midline above which that side is "clear".
CLEAR = 0.80
#: Tumour voxels this close to the reference midline (mm) are not counted on either side.
REFERENCE_BAND_MM = 2.0
EXTRA_DATA = Path.home() / "gliomaseg-data"
#: TCGA ``laterality`` codes in the Kaggle LGG ``data.csv``: the alphabetical order of TCGA's
#: values (Left, Midline, Right); the same coding holds for its other columns (histological
#: type, grade, gender, race, tumour location) as their counts show.
CLINICAL_SIDE = {"1": "left", "3": "right"}


def _world_x(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return points.astype(np.float64) @ affine[0, :3] + affine[0, 3]


def _reference_brain(case: Case) -> np.ndarray:
    """A brain/head mask made without gliomaseg.core.laterality (per slice for noisy images)."""
    if case.brain_mask is not None and case.brain_mask.any():
        return case.brain_mask
    assert case.image is not None
    nonzero = np.any(case.image != 0, axis=0)
    if nonzero.mean() < 0.95:
        return nonzero
    flair = case.image[case.modalities.index("flair")]
    return flair > flair.mean(axis=(0, 1), keepdims=True)  # per slice: above its mean


def reference_right_share(case: Case) -> float | None:
    """Share of tumour voxels right of the per-slice brain midline (None: none counted)."""
    assert case.label is not None
    brain = _reference_brain(case)
    right = left = 0
    for k in range(case.shape[2]):
        tumour = np.argwhere(case.label[:, :, k] > 0)
        head = np.argwhere(brain[:, :, k])
        if not len(tumour) or not len(head):
            continue
        kk = np.full((len(head), 1), k)
        hx = _world_x(np.hstack([head, kk]), case.affine)
        mid = (hx.min() + hx.max()) / 2.0
        tx = _world_x(np.hstack([tumour, np.full((len(tumour), 1), k)]), case.affine) - mid
        right += int(np.count_nonzero(tx > REFERENCE_BAND_MM))
        left += int(np.count_nonzero(tx < -REFERENCE_BAND_MM))
    return right / (right + left) if right + left else None


def _labelled_cases(roots: list[Path], skip: set[Path]) -> Iterator[Case]:
    for root in roots:
        for ref in find_cases(root):
            if ref.layout == "nifti-file" or Path(ref.path).resolve() in skip:
                continue  # loose label maps without their images: no brain to measure
            skip.add(Path(ref.path).resolve())
            case = read_case(ref)
            if case.label is not None and case.image is not None and case.label.any():
                yield case


def _check_sides(cases: Iterator[Case]) -> dict[str, int]:
    checked: dict[str, int] = {}
    failures = []
    for case in cases:
        tool = tumour_side(case.label, case.affine, brain_mask=case.brain_mask, image=case.image)
        share = reference_right_share(case)
        side = tool["laterality"]
        if share is None:
            continue
        if (
            (share >= CLEAR and side != "right")
            or (share <= 1 - CLEAR and side != "left")
            or (side == "right" and share < 0.5)
            or (side == "left" and share > 0.5)
        ):
            failures.append(f"{case.case_id}: reference {share:.2f} right, gliomaseg {side}")
        checked[case.layout] = checked.get(case.layout, 0) + 1
    assert not failures, "\n".join(failures)
    return checked


def test_side_agrees_with_label_and_brain_on_every_shared_case(shared_data):
    roots = [
        shared_data / name
        for name in (
            "brats",
            "brats_auto_labels",
            "brats2013_two_modality",
            "brats2013_2d_slices",
            "brats2020_h5_slices",
            "lgg",
        )
    ]
    checked = _check_sides(_labelled_cases(roots, set()))
    assert {"brats2020", "brats2023", "upenn-gbm", "brats2013", "kaggle-h5", "lgg-tiff"} <= set(
        checked
    )


def test_side_agrees_on_the_extra_brats_and_lgg_cases(shared_data):
    roots = [EXTRA_DATA / "brats49", EXTRA_DATA / "lgg_dev" / "kaggle_3m"]
    if not all(r.is_dir() for r in roots):
        pytest.skip(f"extra real data not extracted under {EXTRA_DATA} (see ../shared/data)")
    checked = _check_sides(_labelled_cases(roots, set()))
    assert checked.get("lgg-tiff", 0) >= 80 and checked.get("brats2020", 0) >= 40


def _clinical_sides(folder: Path) -> dict[str, str]:
    with (folder / "data.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        r["Patient"]: CLINICAL_SIDE[r["laterality"]]
        for r in rows
        if r["laterality"] in CLINICAL_SIDE
    }


def _lgg_folder(shared_data: Path) -> Path:
    dev = EXTRA_DATA / "lgg_dev" / "kaggle_3m"
    return dev if dev.is_dir() else shared_data / "lgg" / "kaggle_3m_sample"


def test_lgg_side_agrees_with_the_clinical_laterality(shared_data):
    """Left-right of the TIFFs (the DICOM display convention) against the clinical record."""
    folder = _lgg_folder(shared_data)
    clinical = _clinical_sides(folder)
    agree = disagree = 0
    for ref in find_cases(folder):
        expected = clinical.get("_".join(ref.case_id.split("_")[:3]))
        if expected is None:
            continue
        case = read_case(ref)
        side = tumour_side(case.label, case.affine, image=case.image)["laterality"]
        if side in ("left", "right"):
            agree += side == expected
            disagree += side != expected
    assert agree >= 5
    # A swapped convention would agree with almost none; allow the odd clinical-record slip.
    assert disagree <= 0.1 * (agree + disagree)


def test_summary_explain_and_report_use_one_side(shared_data):
    for folder in (
        shared_data / "brats" / "BraTS2021_00002",
        shared_data / "lgg" / "kaggle_3m_sample" / "TCGA_CS_6186_20000601",
    ):
        case = read_case(folder)
        assert case.label is not None
        binary = bool(case.scheme is not None and case.scheme.binary)
        summary = tumour_geometry(case.label, case.affine, brain=case.brain_mask, image=case.image)
        feats = case_features(
            case.label,
            affine=case.affine,
            brain_mask=case.brain_mask,
            image=case.image,
            binary=binary,
        )
        side = tumour_side(case.label, case.affine, brain_mask=case.brain_mask, image=case.image)
        assert summary["hemisphere"] == feats["laterality"] == side["laterality"] is not None


def _display_masks(case: Case) -> np.ndarray:
    """(Z, rows, cols) head/brain of a case as the report's panels show it."""
    brain = _reference_brain(case)
    return np.stack([display_slice(brain[:, :, k]) for k in range(case.shape[2])])


def _mirror_overlap(mask: np.ndarray, axis: int) -> float:
    """Dice of a 2D mask with its mirror image about its own centroid line (rows or columns)."""
    idx = np.argwhere(mask)
    centre = idx[:, axis].mean()
    mirrored = idx.copy()
    mirrored[:, axis] = np.rint(2 * centre - idx[:, axis]).astype(int)
    keep = (mirrored[:, axis] >= 0) & (mirrored[:, axis] < mask.shape[axis])
    flipped = np.zeros_like(mask)
    flipped[tuple(mirrored[keep].T)] = True
    return 2 * np.count_nonzero(flipped & mask) / (2 * np.count_nonzero(mask))


def _head_section(case: Case) -> np.ndarray:
    """Head (or brain) outline in the axial slice with the most tumour, as a panel shows it.

    Otsu threshold of FLAIR, largest region, holes filled: noise slices and the noisy
    background of the LGG TIFFs stay out.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    assert case.image is not None and case.label is not None
    k = int(np.argmax((case.label > 0).sum(axis=(0, 1))))
    plane = case.image[case.modalities.index("flair")][:, :, k]
    regions, _ = ndimage.label(plane > threshold_otsu(plane))
    largest = regions == int(np.argmax(np.bincount(regions.ravel())[1:])) + 1
    return display_slice(ndimage.binary_fill_holes(largest))


def test_figure_markers_sit_on_the_anatomy(shared_data):
    """A/P markers on the front-back axis (symmetry), L/R on the patient's sides (affine)."""
    # The panel's vertical axis is A (top) -> P (bottom), the horizontal one R -> L.
    assert ORIENTATION_MARKS["A"][1] > 0.5 > ORIENTATION_MARKS["P"][1]
    assert ORIENTATION_MARKS["R"][0] < 0.5 < ORIENTATION_MARKS["L"][0]
    lgg = shared_data / "lgg" / "kaggle_3m_sample"
    cases = [read_case(shared_data / "brats" / "BraTS2021_00000")]
    cases += [read_case(p) for p in sorted(lgg.glob("TCGA_*"))]
    for case in cases:
        shown = _head_section(case)
        # A head is mirror-symmetric about its mid-sagittal plane: the panel's vertical line
        # (between R and L). Rotated by 90 degrees (the old LGG reading) it would not be.
        lr, ap = _mirror_overlap(shown, axis=1), _mirror_overlap(shown, axis=0)
        assert lr > ap, f"{case.case_id}: panel symmetric about the wrong axis ({lr:.3f} {ap:.3f})"
        # Column 0 of a panel is the patient's right: the largest scanner x (RAS+).
        columns = display_slice(np.arange(case.shape[0])[:, None] * np.ones(case.shape[1]))
        first, last = int(columns[0, 0]), int(columns[0, -1])
        assert (case.affine @ [first, 0, 0, 1])[0] > (case.affine @ [last, 0, 0, 1])[0]


def test_cerebellum_is_under_the_p_marker(shared_data):
    """Skull-stripped BraTS brains: the lowest quarter (cerebellum) sits towards "P"."""
    for ref in find_cases(shared_data / "brats"):
        case = read_case(ref, with_label=False)
        shown = _display_masks(case)  # (Z, rows, cols), row 0 at the "A" marker
        z = np.flatnonzero(shown.any(axis=(1, 2)))
        low = shown[z[0] : z[0] + (z[-1] - z[0]) // 4 + 1]
        rows_low = np.argwhere(low)[:, 1].mean()
        rows_all = np.argwhere(shown)[:, 1].mean()
        assert rows_low > rows_all, f"{ref.case_id}: lowest quarter not towards P"
