"""Synthetic cases (phantom and MNI) and writing them in every supported layout."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from gliomaseg.core.case import MODALITIES
from gliomaseg.core.geometry import orientation_code, reorient
from gliomaseg.core.labels import ED, ET, NCR
from gliomaseg.io.tiff import LGG_AXES
from gliomaseg.io.writers import LAYOUTS, write_layout
from gliomaseg.synthetic.phantoms import (
    BRATS_AFFINE,
    SyntheticCase,
    grid_affine,
    make_brats_like,
    make_case,
)

PHANTOM_SHAPE = (32, 32, 32)
MNI_SHAPE = (48, 56, 40)
MNI_SPACING = (3.0, 3.5, 4.0)


def phantom(seed: int = 0, **kwargs: object) -> SyntheticCase:
    return make_case(rng=np.random.default_rng(seed), template="phantom", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def case() -> SyntheticCase:
    return phantom(3, case_id="Case_007", spacing=(1.0, 1.2, 1.5))


@pytest.fixture(scope="module")
def mni_case() -> SyntheticCase:
    pytest.importorskip("nilearn")
    return make_case(
        rng=np.random.default_rng(11), shape=MNI_SHAPE, spacing=MNI_SPACING, template="mni"
    )


# --------------------------------------------------------------------------- phantom


def test_phantom_shape_dtype_labels(case: SyntheticCase) -> None:
    assert set(case.images) == set(MODALITIES)
    for img in case.images.values():
        assert img.shape == PHANTOM_SHAPE
        assert img.dtype == np.float32
        assert np.isfinite(img).all() and img.min() >= 0
    assert case.label.shape == PHANTOM_SHAPE and case.label.dtype == np.uint8
    assert set(np.unique(case.label).tolist()) == {0, NCR, ED, ET}
    assert case.affine.shape == (4, 4) and case.affine.dtype == np.float64
    assert case.stack().shape == (4, *PHANTOM_SHAPE)


def test_phantom_labels_are_nested(case: SyntheticCase) -> None:
    ncr, tc, wt = case.label == NCR, np.isin(case.label, (NCR, ET)), case.label > 0
    # NCR is surrounded by ET (its one-voxel dilation stays in the tumour core) ...
    assert not (ndimage.binary_dilation(ncr) & ~tc).any()
    # ... and the core by edema.
    assert not (ndimage.binary_dilation(tc) & ~wt).any()
    # Tumour lies inside the brain (non-zero image).
    assert (case.images["t1"][wt] > 0).all()


def test_phantom_is_fast() -> None:
    phantom(0)
    start = time.perf_counter()
    phantom(1)
    assert time.perf_counter() - start < 0.1


def test_deterministic_by_seed() -> None:
    a, b, c = phantom(5), phantom(5), phantom(6)
    assert np.array_equal(a.label, b.label)
    for name in MODALITIES:
        assert np.array_equal(a.images[name], b.images[name])
    assert not np.array_equal(a.images["flair"], c.images["flair"])


def test_affine_non_identity(case: SyntheticCase) -> None:
    aff = case.affine
    assert not np.allclose(aff, np.eye(4))
    assert aff[0, 0] == pytest.approx(-1.0)  # axis 0 flipped by default
    np.testing.assert_allclose(np.diag(aff)[1:3], [1.2, 1.5])
    assert np.any(aff[:3, 3] != 0)
    assert "".join(nib.aff2axcodes(aff)) == "LAS"


def test_grid_affine_options() -> None:
    aff = grid_affine((10, 10, 10), (2.0, 2.0, 2.0), flip_axis=(0, 1), origin=(0, 239, 0))
    assert "".join(nib.aff2axcodes(aff)) == "LPS"
    np.testing.assert_allclose(aff[:3, 3], [0, 239, 0])
    assert "".join(nib.aff2axcodes(grid_affine((4, 4, 4), (1, 1, 1), flip_axis=None))) == "RAS"


def test_hemisphere_matches_world_position() -> None:
    for seed in range(6):
        c = phantom(seed)
        centre_world = c.affine[:3, :3] @ ((np.array(c.shape) - 1) / 2) + c.affine[:3, 3]
        tumour_world = c.affine[:3, :3] @ ndimage.center_of_mass(c.label > 0) + c.affine[:3, 3]
        side = "right" if tumour_world[0] > centre_world[0] else "left"
        assert side == c.hemisphere
        np.testing.assert_allclose(tumour_world, c.tumour_centre_mm, atol=2.0)


def test_phantom_contrasts(case: SyntheticCase) -> None:
    lab, img = case.label, case.images
    normal = (lab == 0) & (img["t1"] > 0)
    assert img["flair"][lab == ED].mean() > 1.3 * img["flair"][normal].mean()
    assert img["t1ce"][lab == ET].mean() > 1.2 * img["t1ce"][normal].mean()
    assert img["t1ce"][lab == NCR].mean() < img["t1ce"][lab == ET].mean()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"template": "atlas"},
        {"shape": (32, 32)},
        {"spacing": (1.0, 0.0, 1.0)},
        {"flip_axis": 3},
        {"tumour_radius_mm": -1.0},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"template": "phantom", **kwargs}
    with pytest.raises(ValueError):
        make_case(rng=np.random.default_rng(0), **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- MNI


def test_mni_case_contrasts(mni_case: SyntheticCase) -> None:
    lab, img = mni_case.label, mni_case.images
    assert lab.shape == MNI_SHAPE and img["t1"].shape == MNI_SHAPE
    assert set(np.unique(lab).tolist()) == {0, NCR, ED, ET}
    brain = img["t1"] > 0
    assert 0.1 < brain.mean() < 0.9
    assert img["flair"][~brain].max() == 0  # skull-stripped: zero outside the brain
    # Healthy tissue: T1 bright WM / mid GM / dark CSF, T2 the reverse (crude tissue split).
    normal = brain & (lab == 0)
    t1 = img["t1"][normal]
    t2 = img["t2"][normal]
    wm, csf = t1 > np.quantile(t1, 0.8), t1 < np.quantile(t1, 0.1)
    assert t2[csf].mean() > t2[wm].mean()
    assert img["flair"][lab == ED].mean() > 1.3 * img["flair"][normal].mean()
    assert img["t1ce"][lab == ET].mean() > 1.2 * img["t1ce"][normal].mean()
    assert img["t1"][lab > 0].mean() < img["t1"][normal].mean() * 1.05
    assert 200 < img["t1"][normal].mean() < 1000


def test_mni_tissue_means(mni_case: SyntheticCase) -> None:
    from gliomaseg.synthetic.mni import _mni_anatomy

    anatomy = _mni_anatomy(MNI_SHAPE, mni_case.affine)
    csf, gm, wm = (anatomy.probs[k] > 0.7 for k in range(3))
    normal = mni_case.label == 0
    t1, t2, flair = (mni_case.images[m] for m in ("t1", "t2", "flair"))
    assert t1[wm & normal].mean() > t1[gm & normal].mean() > t1[csf & normal].mean()
    assert t2[csf & normal].mean() > t2[gm & normal].mean() > t2[wm & normal].mean()
    assert flair[gm & normal].mean() > flair[wm & normal].mean() > flair[csf & normal].mean()


def test_mni_deterministic(mni_case: SyntheticCase) -> None:
    again = make_case(
        rng=np.random.default_rng(11), shape=MNI_SHAPE, spacing=MNI_SPACING, template="mni"
    )
    assert np.array_equal(again.label, mni_case.label)
    assert np.array_equal(again.images["t1ce"], mni_case.images["t1ce"])


def test_mni_hemisphere_is_world_side(mni_case: SyntheticCase) -> None:
    aff = mni_case.affine
    brain_x = (aff @ [*ndimage.center_of_mass(mni_case.images["t1"] > 0), 1.0])[0]
    tumour_x = (aff @ [*ndimage.center_of_mass(mni_case.label > 0), 1.0])[0]
    assert mni_case.hemisphere == ("right" if tumour_x > brain_x else "left")
    assert abs(tumour_x - brain_x) > 5.0


@pytest.mark.slow
def test_brats_like_case() -> None:
    pytest.importorskip("nilearn")
    c = make_brats_like(rng=np.random.default_rng(0), case_id="BraTS20_Training_001")
    assert c.label.shape == (240, 240, 155)
    np.testing.assert_array_equal(c.affine, BRATS_AFFINE)
    assert "".join(nib.aff2axcodes(c.affine)) == "LPS"
    assert set(np.unique(c.label).tolist()) == {0, NCR, ED, ET}
    wt_ml = float((c.label > 0).sum()) / 1000.0
    assert 10 < wt_ml < 250


# --------------------------------------------------------------------------- writers


def _load(path: Path) -> nib.Nifti1Image:
    img = nib.load(str(path))
    assert isinstance(img, nib.Nifti1Image)
    return img


@pytest.mark.parametrize(
    ("layout", "suffixes", "labels"),
    [
        ("brats2020", ("_flair", "_t1", "_t1ce", "_t2", "_seg"), {0, 1, 2, 4}),
        ("brats2023", ("-t2f", "-t1n", "-t1c", "-t2w", "-seg"), {0, 1, 2, 3}),
        ("upenn", ("_FLAIR", "_T1", "_T1GD", "_T2", "_automated_approx_segm"), {0, 1, 2, 4}),
    ],
)
def test_write_folder_layouts(
    case: SyntheticCase, tmp_path: Path, layout: str, suffixes: tuple[str, ...], labels: set[int]
) -> None:
    folder = write_layout(case, tmp_path, layout=layout)
    assert folder == tmp_path / case.case_id
    expected = {f"{case.case_id}{s}.nii.gz" for s in suffixes}
    assert {p.name for p in folder.iterdir()} == expected
    for modality, suffix in zip(MODALITIES, suffixes, strict=False):
        img = _load(folder / f"{case.case_id}{suffix}.nii.gz")
        np.testing.assert_allclose(img.affine, case.affine, atol=1e-5)
        np.testing.assert_allclose(img.get_fdata(), case.images[modality], rtol=1e-6)
    seg = _load(folder / f"{case.case_id}{suffixes[-1]}.nii.gz")
    assert seg.get_data_dtype() == np.uint8
    values = np.asarray(seg.dataobj)
    assert set(np.unique(values).tolist()) == labels
    assert np.array_equal(values > 0, case.label > 0)


def test_write_int16_images(case: SyntheticCase, tmp_path: Path) -> None:
    folder = write_layout(case, tmp_path, layout="brats2020", image_dtype="int16")
    img = _load(folder / f"{case.case_id}_t1.nii.gz")
    assert img.get_data_dtype() == np.int16
    np.testing.assert_allclose(np.asarray(img.dataobj), case.images["t1"], atol=0.51)


def test_write_msd(case: SyntheticCase, tmp_path: Path) -> None:
    path = write_layout(case, tmp_path, layout="msd")
    assert path == tmp_path / "imagesTr" / f"{case.case_id}.nii.gz"
    img = _load(path)
    assert img.shape == (*PHANTOM_SHAPE, 4)
    np.testing.assert_allclose(img.affine, case.affine, atol=1e-5)
    data = img.get_fdata()
    for k, modality in enumerate(MODALITIES):  # FLAIR, T1w, T1gd, T2w
        np.testing.assert_allclose(data[..., k], case.images[modality], rtol=1e-6)
    seg = np.asarray(_load(tmp_path / "labelsTr" / f"{case.case_id}.nii.gz").dataobj)
    assert np.array_equal(seg == 1, case.label == ED)
    assert np.array_equal(seg == 2, case.label == NCR)
    assert np.array_equal(seg == 3, case.label == ET)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["modality"] == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    assert meta["labels"]["1"] == "edema" and meta["labels"]["3"] == "enhancing tumour"
    assert meta["numTraining"] == 1
    assert meta["training"] == [
        {"image": f"./imagesTr/{case.case_id}.nii.gz", "label": f"./labelsTr/{case.case_id}.nii.gz"}
    ]


def test_write_nnunet_merges_dataset_json(tmp_path: Path) -> None:
    a, b = phantom(1, case_id="BRATS_001"), phantom(2, case_id="BRATS_002")
    first = write_layout(a, tmp_path, layout="nnunet")
    write_layout(b, tmp_path, layout="nnunet")
    assert first == tmp_path / "imagesTr" / "BRATS_001_0000.nii.gz"
    names = sorted(p.name for p in (tmp_path / "imagesTr").iterdir())
    assert names == [f"BRATS_00{i}_000{k}.nii.gz" for i in (1, 2) for k in range(4)]
    for k, modality in enumerate(MODALITIES):
        data = _load(tmp_path / "imagesTr" / f"BRATS_002_000{k}.nii.gz").get_fdata()
        np.testing.assert_allclose(data, b.images[modality], rtol=1e-6)
    seg = np.asarray(_load(tmp_path / "labelsTr" / "BRATS_001.nii.gz").dataobj)
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}
    assert np.array_equal(seg == 2, a.label == NCR)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FLAIR", "1": "T1", "2": "T1Gd", "3": "T2"}
    assert meta["labels"] == {
        "background": 0,
        "edema": 1,
        "non-enhancing tumor": 2,
        "enhancing tumour": 3,
    }
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"


def test_write_nnunet_channel_order(case: SyntheticCase, tmp_path: Path) -> None:
    order = ("t1", "t1ce", "t2", "flair")
    write_layout(case, tmp_path, layout="nnunet", channel_order=order)
    data = _load(tmp_path / "imagesTr" / f"{case.case_id}_0003.nii.gz").get_fdata()
    np.testing.assert_allclose(data, case.images["flair"], rtol=1e-6)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T1Gd", "2": "T2", "3": "FLAIR"}
    with pytest.raises(ValueError, match="channel_names"):
        write_layout(case, tmp_path, layout="nnunet")


def test_write_h5(case: SyntheticCase, tmp_path: Path) -> None:
    out = write_layout(case, tmp_path, layout="h5", volume=7)
    assert out == tmp_path
    files = sorted(tmp_path.glob("volume_7_slice_*.h5"))
    assert 1 <= len(files) <= 3
    for path in files:
        s = int(path.stem.rsplit("_", 1)[1])
        with h5py.File(path, "r") as f:
            image, mask = f["image"][()], f["mask"][()]
        assert image.shape == (*PHANTOM_SHAPE[:2], 4) and image.dtype == np.float64
        assert mask.shape == (*PHANTOM_SHAPE[:2], 3) and mask.dtype == np.uint8
        for k, modality in enumerate(MODALITIES):
            raw = case.images[modality][:, :, s].astype(np.float64)
            np.testing.assert_allclose(image[..., k], (raw - raw.mean()) / raw.std(), atol=1e-9)
        for k, code in enumerate((NCR, ED, ET)):
            assert np.array_equal(mask[..., k] == 1, case.label[:, :, s] == code)
        assert mask.any()


def test_write_h5_explicit_slices(case: SyntheticCase, tmp_path: Path) -> None:
    write_layout(case, tmp_path, layout="h5", slices=[0, 5])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "volume_7_slice_0.h5",
        "volume_7_slice_5.h5",
    ]
    with pytest.raises(ValueError, match="outside"):
        write_layout(case, tmp_path, layout="h5", slices=[99])


def test_write_lgg_tiff(case: SyntheticCase, tmp_path: Path) -> None:
    pid = "TCGA_CS_4941_19960909"
    lgg = SyntheticCase(pid, case.images, case.label, case.affine)
    folder = write_layout(lgg, tmp_path, layout="lgg-tiff")
    assert folder == tmp_path / pid
    depth = PHANTOM_SHAPE[2]
    names = {p.name for p in folder.iterdir()}
    assert names == {f"{pid}_{n}.tif" for n in range(1, depth + 1)} | {
        f"{pid}_{n}_mask.tif" for n in range(1, depth + 1)
    }
    # TIFF order: rows anterior -> posterior, columns patient right -> left, n inferior -> up
    tiff_label = reorient(case.label, orientation_code(case.affine), LGG_AXES)
    z = int(np.argmax((tiff_label > 0).sum(axis=(0, 1))))
    rgb = tifffile.imread(folder / f"{pid}_{z + 1}.tif")
    mask = tifffile.imread(folder / f"{pid}_{z + 1}_mask.tif")
    assert rgb.shape == (*tiff_label.shape[:2], 3) and rgb.dtype == np.uint8
    assert mask.shape == tiff_label.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert np.array_equal(mask == 255, tiff_label[:, :, z] > 0)
    for k, modality in enumerate(("t1", "flair", "t1ce")):
        vol = reorient(case.images[modality], orientation_code(case.affine), LGG_AXES)
        expected = np.rint((vol[:, :, z] - vol.min()) / (vol.max() - vol.min()) * 255)
        np.testing.assert_array_equal(rgb[..., k], expected.astype(np.uint8))


def test_write_without_label(case: SyntheticCase, tmp_path: Path) -> None:
    unlabelled = SyntheticCase(case.case_id, case.images, case.label, case.affine)
    unlabelled.label = None  # type: ignore[assignment]
    folder = write_layout(unlabelled, tmp_path / "b", layout="brats2023")
    assert not (folder / f"{case.case_id}-seg.nii.gz").exists()
    path = write_layout(unlabelled, tmp_path / "n", layout="nnunet")
    assert path.parent.name == "imagesTs"
    assert json.loads((tmp_path / "n" / "dataset.json").read_text())["numTraining"] == 0


def test_unknown_layout(case: SyntheticCase, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="brats2020"):
        write_layout(case, tmp_path, layout="dicom")
    assert "lgg-tiff" in LAYOUTS and len(LAYOUTS) == 7


def test_no_temporary_files_left(case: SyntheticCase, tmp_path: Path) -> None:
    for layout in LAYOUTS:
        write_layout(case, tmp_path / layout, layout=layout)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert leftovers == []


def test_mni_case_round_trips_through_brats2020(mni_case: SyntheticCase, tmp_path: Path) -> None:
    folder = write_layout(mni_case, tmp_path, layout="brats2020")
    seg = _load(folder / f"{mni_case.case_id}_seg.nii.gz")
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) == {0, 1, 2, 4}
    np.testing.assert_allclose(seg.affine, mni_case.affine, atol=1e-5)
