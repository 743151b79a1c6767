"""Write a case in any supported on-disk layout (the inverse of the readers).

Used to build test fixtures and demo data from :mod:`gliomaseg.synthetic.phantoms` cases, and to export
cases into other tools' layouts. Arrays are written in the case's own voxel order with its own
affine (no reorientation); label maps are converted from internal codes with the layout's
scheme (:meth:`gliomaseg.core.labels.LabelScheme.decode`). Every file is written atomically.

=============  =====================================================================
layout         files (``<id>`` = ``case.case_id``)
=============  =====================================================================
``brats2020``  ``<id>/<id>_{flair,t1,t1ce,t2,seg}.nii.gz``; labels 0, 1, 2, 4
``brats2023``  ``<id>/<id>-{t2f,t1n,t1c,t2w,seg}.nii.gz``; labels 0, 1, 2, 3
``upenn``      ``<id>/<id>_{FLAIR,T1,T1GD,T2}.nii.gz`` and
               ``<id>/<id>_automated_approx_segm.nii.gz``; labels 0, 1, 2, 4
``msd``        ``imagesTr/<id>.nii.gz`` (X, Y, Z, 4: FLAIR, T1w, T1gd, T2w),
               ``labelsTr/<id>.nii.gz`` (1 edema, 2 non-enhancing, 3 enhancing),
               ``dataset.json``
``nnunet``     ``imagesTr/<id>_000{0..3}.nii.gz`` (FLAIR, T1, T1Gd, T2 by default),
               ``labelsTr/<id>.nii.gz`` (MSD values), nnU-Net v2 ``dataset.json``
``h5``         ``volume_<V>_slice_<S>.h5``: ``image`` (X, Y, 4) float64 FLAIR, T1, T1Gd, T2,
               each channel z-scored over the whole slice; ``mask`` (X, Y, 3) uint8
               one-hot NCR/NET, ED, ET; arrays are ``volume[:, :, S]``
``lgg-tiff``   ``<id>/<id>_<n>.tif`` (rows, columns, 3) uint8 T1, FLAIR, T1ce (each scaled
               to 0..255 over the volume) and ``<id>/<id>_<n>_mask.tif`` uint8 0/255, one
               per axial slice, ``n`` = 1 the most inferior: the TIFFs store no geometry, so
               the arrays are reoriented from the case's affine to the dataset's own
               orientation (rows anterior->posterior, columns patient right->left,
               :data:`gliomaseg.io.tiff.LGG_AXES`); voxel sizes are lost
=============  =====================================================================

Cases without a label map (``label is None``) are written without segmentation files; for
``msd`` and ``nnunet`` their images go to ``imagesTs`` instead of ``imagesTr``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import MODALITIES
from gliomaseg.core.labels import BRATS2020, BRATS2023, MSD, LabelScheme
from gliomaseg.io.atomic import write_json_atomic
from gliomaseg.io.hdf5 import H5_CHANNELS, write_h5_slices
from gliomaseg.io.nifti import write_nifti
from gliomaseg.io.tiff import LGG_CHANNELS, write_lgg_stack

LAYOUTS: tuple[str, ...] = ("brats2020", "brats2023", "upenn", "msd", "nnunet", "h5", "lgg-tiff")

#: File-name suffix of each modality in the per-case-folder layouts, and of the label map.
BRATS2020_NAMES: dict[str, str] = {
    "flair": "_flair",
    "t1": "_t1",
    "t1ce": "_t1ce",
    "t2": "_t2",
    "label": "_seg",
}
BRATS2023_NAMES: dict[str, str] = {
    "flair": "-t2f",
    "t1": "-t1n",
    "t1ce": "-t1c",
    "t2": "-t2w",
    "label": "-seg",
}
UPENN_NAMES: dict[str, str] = {
    "flair": "_FLAIR",
    "t1": "_T1",
    "t1ce": "_T1GD",
    "t2": "_T2",
    "label": "_automated_approx_segm",
}
_FOLDER_LAYOUTS: dict[str, tuple[dict[str, str], LabelScheme]] = {
    "brats2020": (BRATS2020_NAMES, BRATS2020),
    "brats2023": (BRATS2023_NAMES, BRATS2023),
    "upenn": (UPENN_NAMES, BRATS2020),
}
#: MSD Task01 modality names, in channel order (same order as :data:`MODALITIES`).
MSD_MODALITY: dict[str, str] = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
MSD_LABELS: dict[str, str] = {
    "0": "background",
    "1": "edema",
    "2": "non-enhancing tumor",
    "3": "enhancing tumour",
}
#: nnU-Net channel name of each modality.
NNUNET_CHANNEL_NAMES: dict[str, str] = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1Gd", "t2": "T2"}
NNUNET_LABELS: dict[str, int] = {
    "background": 0,
    "edema": 1,
    "non-enhancing tumor": 2,
    "enhancing tumour": 3,
}
NIFTI = ".nii.gz"


class CaseLike(Protocol):
    """What a writer needs: an id, (X, Y, Z) images by modality, internal labels, an affine."""

    @property
    def case_id(self) -> str: ...

    @property
    def images(self) -> Mapping[str, NDArray[Any]]: ...

    @property
    def label(self) -> NDArray[Any] | None: ...

    @property
    def affine(self) -> NDArray[np.float64]: ...


def write_layout(
    case: CaseLike,
    out_dir: str | Path,
    *,
    layout: str,
    channel_order: Sequence[str] | None = None,
    slices: Sequence[int] | None = None,
    max_slices: int = 3,
    volume: int | None = None,
    image_dtype: str = "float32",
) -> Path:
    """Write ``case`` under ``out_dir`` in ``layout``.

    Args:
        case: Images (X, Y, Z) keyed by :data:`MODALITIES`, label (X, Y, Z) internal codes 0-3
            or ``None``, 4x4 affine, all in the file voxel order to write.
        out_dir: Dataset root (created when missing).
        layout: One of :data:`LAYOUTS`.
        channel_order: ``nnunet`` only: modalities for ``_0000``, ``_0001``... (default
            :data:`MODALITIES`: FLAIR, T1, T1Gd, T2).
        slices: ``h5`` only: axial (z) indices to write (default: up to ``max_slices``
            evenly spaced slices through the tumour; the middle slice when there is none).
        max_slices: ``h5`` only: how many tumour slices the default picks.
        volume: ``h5`` only: the ``<V>`` in ``volume_<V>_slice_<S>.h5`` (default: the
            trailing number of the case id).
        image_dtype: NIfTI layouts: on-disk image type, ``"float32"`` or ``"int16"``
            (rounded and clipped).

    Returns:
        The case folder (``brats2020``, ``brats2023``, ``upenn``, ``lgg-tiff``), the 4D image
        (``msd``), the ``_0000`` image (``nnunet``) or ``out_dir`` (``h5``).

    Raises:
        ValueError: unknown layout, unsafe case id, missing modality, bad slice index or
            mismatched shapes.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}'; choose one of {list(LAYOUTS)}")
    if image_dtype not in ("float32", "int16"):
        raise ValueError(f"image_dtype must be 'float32' or 'int16', got '{image_dtype}'")
    _check_case(case)
    out = Path(out_dir)
    if layout in _FOLDER_LAYOUTS:
        names, scheme = _FOLDER_LAYOUTS[layout]
        return _write_folder(case, out, names, scheme, image_dtype)
    if layout == "msd":
        return _write_msd(case, out, image_dtype)
    if layout == "nnunet":
        order = tuple(channel_order) if channel_order is not None else MODALITIES
        return _write_nnunet(case, out, order, image_dtype)
    if layout == "h5":
        return _write_h5(case, out, slices=slices, max_slices=max_slices, volume=volume)
    return _write_lgg(case, out)


# --------------------------------------------------------------------------- checks / helpers


def _check_case(case: CaseLike) -> None:
    cid = case.case_id
    if not cid or "/" in cid or "\\" in cid or cid in (".", ".."):
        raise ValueError(f"case id '{cid}' cannot be used as a file name; use letters, digits, _ -")
    shapes = {name: tuple(np.shape(img)) for name, img in case.images.items()}
    if case.label is not None:
        shapes["label"] = tuple(np.shape(case.label))
    if len(set(shapes.values())) > 1 or any(len(s) != 3 for s in shapes.values()):
        raise ValueError(f"{cid}: images and label must share one 3D (X, Y, Z) shape, got {shapes}")


def _modality(case: CaseLike, name: str) -> NDArray[Any]:
    if name not in case.images:
        raise ValueError(
            f"{case.case_id}: modality '{name}' is missing (case has {sorted(case.images)}); "
            f"this layout needs {list(MODALITIES)}"
        )
    return np.asarray(case.images[name])


def _image_data(array: NDArray[Any], image_dtype: str) -> NDArray[Any]:
    if image_dtype == "int16":
        info = np.iinfo(np.int16)
        return np.clip(np.rint(array), info.min, info.max).astype(np.int16)
    return np.asarray(array, dtype=np.float32)


def _mm_header() -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    return header


def _write_image(
    path: Path, array: NDArray[Any], affine: NDArray[np.float64], image_dtype: str
) -> None:
    data = _image_data(array, image_dtype)
    write_nifti(
        path, data, np.asarray(affine, np.float64), header=_mm_header(), dtype=data.dtype.type
    )


def _write_label(path: Path, case: CaseLike, scheme: LabelScheme) -> None:
    assert case.label is not None
    data = scheme.decode(np.asarray(case.label), dtype=np.uint8)
    write_nifti(
        path, data, np.asarray(case.affine, np.float64), header=_mm_header(), dtype=np.uint8
    )


# --------------------------------------------------------------------------- NIfTI layouts


def _write_folder(
    case: CaseLike, out: Path, names: dict[str, str], scheme: LabelScheme, image_dtype: str
) -> Path:
    cid = case.case_id
    folder = out / cid
    images = {m: _modality(case, m) for m in MODALITIES}
    for modality, array in images.items():
        _write_image(folder / f"{cid}{names[modality]}{NIFTI}", array, case.affine, image_dtype)
    if case.label is not None:
        _write_label(folder / f"{cid}{names['label']}{NIFTI}", case, scheme)
    return folder


def _write_msd(case: CaseLike, out: Path, image_dtype: str) -> Path:
    cid = case.case_id
    stack = np.stack([_modality(case, m) for m in MODALITIES], axis=-1)
    split = "Tr" if case.label is not None else "Ts"
    image_path = out / f"images{split}" / f"{cid}{NIFTI}"
    _write_image(image_path, stack, case.affine, image_dtype)
    if case.label is not None:
        _write_label(out / "labelsTr" / f"{cid}{NIFTI}", case, MSD)
    _update_msd_json(out)
    return image_path


def _update_msd_json(out: Path) -> None:
    """(Re)write ``dataset.json`` from the files now present, keeping other existing keys."""
    meta = _read_json(out / "dataset.json")
    training = [
        {"image": f"./imagesTr/{p.name}", "label": f"./labelsTr/{p.name}"}
        for p in _nifti_files(out / "labelsTr")
        if (out / "imagesTr" / p.name).exists()
    ]
    test = [f"./imagesTs/{p.name}" for p in _nifti_files(out / "imagesTs")]
    meta.update(
        {
            "name": meta.get("name", "BRATS"),
            "description": meta.get("description", "Synthetic gliomas in the MSD Task01 layout"),
            "tensorImageSize": "4D",
            "modality": MSD_MODALITY,
            "labels": MSD_LABELS,
            "numTraining": len(training),
            "numTest": len(test),
            "training": training,
            "test": test,
        }
    )
    write_json_atomic(out / "dataset.json", meta)


def _write_nnunet(case: CaseLike, out: Path, order: tuple[str, ...], image_dtype: str) -> Path:
    unknown = [m for m in order if m not in NNUNET_CHANNEL_NAMES]
    if not order or unknown or len(set(order)) != len(order):
        raise ValueError(
            f"channel_order {list(order)} must name distinct modalities from {list(MODALITIES)}"
        )
    cid = case.case_id
    split = "Tr" if case.label is not None else "Ts"
    paths = [out / f"images{split}" / f"{cid}_{k:04d}{NIFTI}" for k in range(len(order))]
    for path, modality in zip(paths, order, strict=True):
        _write_image(path, _modality(case, modality), case.affine, image_dtype)
    if case.label is not None:
        _write_label(out / "labelsTr" / f"{cid}{NIFTI}", case, MSD)
    _update_nnunet_json(out, {str(k): NNUNET_CHANNEL_NAMES[m] for k, m in enumerate(order)})
    return paths[0]


def _update_nnunet_json(out: Path, channel_names: dict[str, str]) -> None:
    meta = _read_json(out / "dataset.json")
    old = meta.get("channel_names")
    if old is not None and old != channel_names:
        raise ValueError(
            f"{out / 'dataset.json'} has channel_names {old}, this case {channel_names}; "
            "write every case of a dataset with the same channel_order"
        )
    meta.update(
        {
            "channel_names": channel_names,
            "labels": NNUNET_LABELS,
            "numTraining": len(_nifti_files(out / "labelsTr")),
            "file_ending": NIFTI,
        }
    )
    meta.setdefault("name", out.name)
    write_json_atomic(out / "dataset.json", meta)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); fix or delete it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object; fix or delete it")
    return data


def _nifti_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.name.endswith(NIFTI) and not p.name.startswith(".")
    )


# --------------------------------------------------------------------------- slice formats


def _write_h5(
    case: CaseLike, out: Path, *, slices: Sequence[int] | None, max_slices: int, volume: int | None
) -> Path:
    stack = np.stack([_modality(case, m) for m in H5_CHANNELS], axis=-1).astype(np.float64)
    label = None if case.label is None else np.asarray(case.label)
    return write_h5_slices(
        stack, label, out, case_id=case.case_id, slices=slices, max_slices=max_slices, volume=volume
    )


def _write_lgg(case: CaseLike, out: Path) -> Path:
    volumes = [_modality(case, m) for m in LGG_CHANNELS]
    label = None if case.label is None else np.asarray(case.label)
    return write_lgg_stack(volumes, label, case.affine, out / case.case_id, case_id=case.case_id)


__all__ = [
    "BRATS2020_NAMES",
    "BRATS2023_NAMES",
    "LAYOUTS",
    "UPENN_NAMES",
    "CaseLike",
    "write_layout",
]
