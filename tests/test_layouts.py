"""Every layout: write a synthetic case, read it back, compare with the truth."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.core.case import MODALITIES
from gliomaseg.core.errors import InputError
from gliomaseg.core.geometry import orientation_code, to_canonical
from gliomaseg.io.caseref import LayoutConfig
from gliomaseg.io.layouts import find_cases, read_case
from gliomaseg.io.naming import tcga_site
from gliomaseg.io.segmentation import write_segmentation
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import SyntheticCase, make_case


@pytest.fixture
def phantom() -> SyntheticCase:
    return make_case(
        rng=np.random.default_rng(7), case_id="Case_001", template="phantom", shape=(20, 22, 18)
    )


def _truth(case: SyntheticCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, affine = to_canonical(case.stack(), case.affine)
    label, _ = to_canonical(case.label, case.affine)
    return image, label, affine


@pytest.mark.parametrize(
    ("layout", "detected", "scheme"),
    [
        ("brats2020", "brats2020", "brats2020"),
        ("brats2023", "brats2023", "brats2023"),
        ("upenn", "upenn-gbm", "brats2020"),
        ("msd", "msd", "msd"),
        ("nnunet", "nnunet", "msd"),
    ],
)
def test_volume_layouts_round_trip(tmp_path, phantom, layout, detected, scheme):
    written = write_layout(phantom, tmp_path / "data", layout=layout)
    refs = find_cases(tmp_path / "data")
    assert [r.layout for r in refs] == [detected]
    case = read_case(refs[0])
    image, label, affine = _truth(phantom)
    assert case.case_id == "Case_001"
    assert case.modalities == MODALITIES
    assert case.scheme is not None and case.scheme.name == scheme
    np.testing.assert_allclose(case.image, image, rtol=1e-6)
    np.testing.assert_array_equal(case.label, label)
    np.testing.assert_allclose(case.affine, affine)
    # A single file of the case finds the same case.
    if layout in ("msd", "nnunet"):
        assert read_case(written).case_id == "Case_001"


def test_nnunet_channel_map_comes_from_dataset_json(tmp_path, phantom):
    order = ("t1", "t1ce", "t2", "flair")  # nnU-Net's BraTS 2021 conversion order
    write_layout(phantom, tmp_path, layout="nnunet", channel_order=order)
    case = read_case(find_cases(tmp_path)[0])
    image, _, _ = _truth(phantom)
    np.testing.assert_allclose(case.channels(("flair",))[0], image[0], rtol=1e-6)
    np.testing.assert_allclose(case.channels(("t2",))[0], image[3], rtol=1e-6)


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("gliomaseg: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("flat", [False, True], ids=["imagesTr", "flat folder"])
def test_nnunet_files_without_dataset_json_are_refused_not_guessed(tmp_path, phantom, capsys, flat):
    """nnU-Net's own BraTS conversion writes T1, T1ce, T2, FLAIR: MSD order would be wrong."""
    from gliomaseg.cli.main import main

    order = ("t1", "t1ce", "t2", "flair")
    write_layout(phantom, tmp_path / "ds", layout="nnunet", channel_order=order)
    (tmp_path / "ds" / "dataset.json").unlink()
    target = tmp_path / "ds" / "imagesTr"
    if flat:  # the images alone, in a folder of their own
        target = tmp_path / "case"
        (tmp_path / "ds" / "imagesTr").rename(target)
    with pytest.raises(InputError, match=r"no .*dataset\.json.*will not guess") as info:
        find_cases(tmp_path / "ds" if not flat else target)
    message = str(info.value)
    assert "\n" not in message and str(target) in message
    assert "channel_names" in message and "gliomaseg-layout.json" in message
    args = ["segment", str(target), "-o", str(tmp_path / "out"), "--model", "brats"]
    assert main([*args, "--no-progress"]) == 2
    assert "dataset.json" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_nnunet_dataset_json_without_channel_names_is_refused(tmp_path, phantom):
    write_layout(phantom, tmp_path, layout="nnunet")
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x", "labels": {}}))
    with pytest.raises(InputError, match=r"no 'channel_names'.*dataset\.json"):
        find_cases(tmp_path)


def test_msd_4d_images_keep_the_decathlon_order_or_their_dataset_json(tmp_path, phantom):
    written = write_layout(phantom, tmp_path, layout="msd")
    image, _, _ = _truth(phantom)
    (tmp_path / "dataset.json").unlink()  # Task01's own order: FLAIR, T1w, T1gd, T2w
    case = read_case(find_cases(tmp_path)[0])
    assert case.modalities == MODALITIES
    np.testing.assert_allclose(case.channels(("flair",))[0], image[0], rtol=1e-6)
    # A dataset.json that names the channels is followed (here: a deliberately odd order).
    names = {"0": "T2w", "1": "T1w", "2": "t1gd", "3": "FLAIR"}
    (tmp_path / "dataset.json").write_text(json.dumps({"modality": names}))
    case = read_case(find_cases(tmp_path)[0])
    np.testing.assert_allclose(case.channels(("t2",))[0], image[0], rtol=1e-6)
    np.testing.assert_allclose(case.channels(("flair",))[0], image[3], rtol=1e-6)
    # Outside imagesTr/imagesTs a 4D file has no documented order: refused when read.
    loose = tmp_path / "elsewhere" / "Case_001.nii.gz"
    loose.parent.mkdir()
    written.rename(loose)
    (ref,) = find_cases(loose)
    assert ref.layout == "nifti-file"
    with pytest.raises(InputError, match="4D image with 4 volumes outside an MSD imagesTr"):
        read_case(ref)


def test_h5_slices_read_as_2d_cases_with_patient_ids(tmp_path):
    synth = make_case(
        rng=np.random.default_rng(3), case_id="x", template="phantom", shape=(240, 240, 8)
    )
    write_layout(synth, tmp_path, layout="h5", volume=12, slices=[3, 4])
    refs = find_cases(tmp_path)
    assert [r.case_id for r in refs] == ["volume_12_slice_3", "volume_12_slice_4"]
    case = read_case(refs[0])
    assert case.shape == (240, 240, 1)
    label, _ = to_canonical(synth.label[:, :, 3:4], np.diag([-1.0, -1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(case.label, label)


def test_lgg_stack_round_trip(tmp_path):
    synth = make_case(
        rng=np.random.default_rng(5),
        case_id="TCGA_CS_4941_19960909",
        template="phantom",
        shape=(24, 24, 12),
    )
    folder = write_layout(synth, tmp_path, layout="lgg-tiff")
    case = read_case(folder)
    assert case.layout == "lgg-tiff" and not case.spacing_known
    assert [int(n.rsplit("_", 1)[1]) for n in case.slice_names] == list(range(1, 13))
    # The TIFFs keep no voxel size but do keep the orientation: read back, the canonical
    # arrays are the synthetic case's own arrays reoriented to RAS+.
    expected, _ = to_canonical((synth.label > 0).astype(np.uint8), synth.affine)
    np.testing.assert_array_equal(case.label, expected)
    assert orientation_code(case.source_affine) == "PLS"
    assert case.meta["institution"] == "CS"
    assert case.input_notes == {}


def test_lgg_channels_filled_with_flair_are_noted(tmp_path):
    from gliomaseg.prepare.inspect import describe

    synth = make_case(
        rng=np.random.default_rng(6),
        case_id="TCGA_CS_4942_19970222",
        template="phantom",
        shape=(24, 24, 8),
    )
    synth.images["t1"] = synth.images["flair"].copy()  # pre-contrast missing in the source
    case = read_case(write_layout(synth, tmp_path, layout="lgg-tiff"))
    assert case.input_notes == {"t1": "copy of FLAIR (sequence missing in the source)"}
    assert "t1: copy of FLAIR (sequence missing in the source)" in describe(case)["warnings"]


def test_config_layout_maps_arbitrary_names(tmp_path, phantom):
    folder = tmp_path / "subject"
    (folder / "imgs").mkdir(parents=True)
    for m, name in zip(MODALITIES, ("A", "B", "C", "D"), strict=True):
        nib.save(
            nib.Nifti1Image(phantom.images[m], phantom.affine), folder / "imgs" / f"{name}.nii.gz"
        )
    nib.save(nib.Nifti1Image(phantom.label, phantom.affine), folder / "truth_map.nii.gz")
    config = {
        "modalities": {m: f"imgs/{n}.nii.gz" for m, n in zip(MODALITIES, "ABCD", strict=True)},
        "label": "truth_map.nii.gz",
        "label_scheme": "brats2023",
    }
    (folder / "gliomaseg-layout.json").write_text(json.dumps(config))
    case = read_case(folder)
    _, label, _ = _truth(phantom)
    assert case.layout == "config"
    np.testing.assert_array_equal(case.label, label)
    assert LayoutConfig.load(folder / "gliomaseg-layout.json").label_scheme == "brats2023"


def test_folder_of_cases_and_batch(tmp_path):
    for i in range(3):
        c = make_case(
            rng=np.random.default_rng(i),
            case_id=f"BraTS2021_{i:05d}",
            template="phantom",
            shape=(16, 16, 16),
        )
        write_layout(c, tmp_path, layout="brats2020")
    assert [r.case_id for r in find_cases(tmp_path)] == [f"BraTS2021_{i:05d}" for i in range(3)]


@pytest.mark.parametrize("scheme", [None, "brats2023", "msd"])
def test_write_segmentation_lands_on_the_input_grid(tmp_path, phantom, scheme):
    folder = write_layout(phantom, tmp_path, layout="brats2020")
    case = read_case(folder)
    out = write_segmentation(case, case.label, tmp_path / "out" / "seg.nii.gz", scheme=scheme)
    img = nib.load(out)
    src = nib.load(folder / "Case_001_flair.nii.gz")
    assert img.shape == src.shape
    np.testing.assert_allclose(img.affine, src.affine)
    expected = {
        None: {1: 1, 2: 2, 3: 4},
        "brats2023": {1: 1, 2: 2, 3: 3},
        "msd": {1: 2, 2: 1, 3: 3},
    }[scheme]
    raw = np.asarray(img.dataobj)
    for internal, value in expected.items():
        np.testing.assert_array_equal(raw == value, phantom.label == internal)
    assert not list((tmp_path / "out").glob(".gstmp-*"))  # no temporary left behind


def test_2d_slice_cases_are_written_back_2d(tmp_path, shared_data):
    folder = shared_data / "brats2013_2d_slices" / "TrainingData" / "BRATS_HG0005"
    case = read_case(folder)
    assert case.shape[2] == 1 and case.source_shape == (160, 216)
    out = write_segmentation(case, case.label, tmp_path / "seg.nii.gz", scheme="brats2020")
    img = nib.load(out)
    assert img.shape == (160, 216)
    ref = nib.load(next(folder.glob("*atropos_truth*")))
    np.testing.assert_allclose(img.affine, ref.affine)
    raw = np.asarray(ref.dataobj)
    np.testing.assert_array_equal(np.asarray(img.dataobj) == 4, raw == 7)


def test_tcga_site_is_the_second_word():
    assert tcga_site("TCGA_CS_4941_19960909") == "CS"
    assert tcga_site("TCGA_DU_7010") == "DU"
    assert tcga_site("TCGA_CS") == ""
    assert tcga_site("case") == ""
