"""Read one case (a :class:`~gliomaseg.io.caseref.CaseRef`) into a canonical :class:`~gliomaseg.core.case.Case`.

One reader per layout family loads the voxels, checks the grids agree, encodes the label map
into internal codes (by the one policy of :mod:`gliomaseg.io.labelmap`) and reorients
everything to RAS+ (:func:`read_ref`);
:func:`gliomaseg.io.layouts.read_case` is the entry point that also accepts a path.
"""

from __future__ import annotations

import numpy as np

from gliomaseg.core.case import MODALITIES, Case
from gliomaseg.core.errors import InputError
from gliomaseg.core.geometry import check_same_grid, to_canonical
from gliomaseg.core.labels import LGG, LabelScheme, get_scheme, guess_scheme
from gliomaseg.io import hdf5, nifti, tiff
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.labelmap import encode_labels, label_grid, label_values
from gliomaseg.io.naming import classify, tcga_site

#: Where each layout's orientation (the canonical RAS+ affine) comes from; shown by
#: ``inspect`` and the README's table. A NIfTI header without qform/sform code makes a case
#: "orientation unknown" whatever its layout (:attr:`Case.orientation_known`).
ORIENTATION_NOTES: dict[str, str] = {
    "nifti": "from the NIfTI header (sform, else qform)",
    "kaggle-h5": (
        "the BraTS grid's (LPS, 1 mm): the slices are cut from BraTS arrays in their own "
        "axes (checked against the source NIfTI)"
    ),
    "lgg-tiff": (
        "rows anterior->posterior, columns patient right->left, slices inferior->superior: "
        "anatomy (eyes, cerebellum) for front/back and up/down; left/right from the source "
        "DICOM display convention, which agrees with the dataset's clinical laterality"
    ),
}

UNKNOWN_ORIENTATION = (
    "unknown: the NIfTI header has neither qform nor sform code, so which way is left, "
    "right, front or back is not recorded; no laterality is reported"
)


def orientation_note(layout: str, *, known: bool = True) -> str:
    """Where the orientation of a case of ``layout`` comes from (for ``inspect``)."""
    if not known:
        return UNKNOWN_ORIENTATION
    return ORIENTATION_NOTES.get(layout, ORIENTATION_NOTES["nifti"])


def read_ref(ref: CaseRef, label_scheme: str | None = None, with_label: bool = True) -> Case:
    """Load the case ``ref`` describes with the reader of its layout (see ``read_case``)."""
    reader = _READERS.get(ref.layout, _read_modality_folder)
    return reader(ref, label_scheme, with_label)


def _read_modality_folder(ref: CaseRef, override: str | None, with_label: bool) -> Case:
    arrays, grids = [], []
    file_shape: tuple[int, ...] = ()
    for path in ref.images.values():
        data, affine = nifti.read_image(path)
        file_shape = file_shape or tuple(int(s) for s in data.shape)
        if data.ndim == 2:  # single-slice exports: processed as one axial slice
            data = data[..., None]
        if data.ndim != 3:
            raise InputError(f"{path}: {data.ndim}D image; expected one 3D volume per modality")
        arrays.append(data)
        grids.append((path.name, data.shape, affine))
    label: np.ndarray | None = None
    brain: np.ndarray | None = None
    scheme = None
    if with_label and ref.label is not None:
        raw, affine = nifti.read_label(ref.label)
        raw = label_grid(raw, ref.label)
        grids.append((ref.label.name, raw.shape, affine))
        label, scheme = encode_labels(raw, ref.label, scheme=override or ref.scheme)
    elif ref.scheme:
        scheme = get_scheme(override or ref.scheme)
    if ref.brain_mask is not None:
        raw, affine = nifti.read_label(ref.brain_mask)
        raw = raw[..., None] if raw.ndim == 2 else raw
        grids.append((ref.brain_mask.name, raw.shape, affine))
        brain = np.asarray(raw) > 0
    check_same_grid(grids)
    image = np.stack(arrays).astype(np.float32, copy=False)
    src_affine = grids[0][2]
    known = nifti.orientation_known(next(iter(ref.images.values())))
    case = _canonical_case(ref, image, label, brain, src_affine, scheme, orientation_known=known)
    case.source_shape = file_shape  # 2D files stay 2D on output
    return case


def _ordered_channels(
    image: np.ndarray, channels: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(C, ...)`` channels stored in ``channels`` order, put in :data:`MODALITIES` order."""
    order = [channels.index(m) for m in MODALITIES if m in channels]
    return np.ascontiguousarray(image[order]), tuple(channels[i] for i in order)


def _canonical_case(
    ref: CaseRef,
    image: np.ndarray | None,
    label: np.ndarray | None,
    brain: np.ndarray | None,
    src_affine: np.ndarray,
    scheme: LabelScheme | None,
    *,
    modalities: tuple[str, ...] | None = None,
    **extra: object,
) -> Case:
    grid = image[0] if image is not None else label
    shape: tuple[int, ...] = grid.shape if grid is not None else ()
    affine = src_affine
    if image is not None:
        image, affine = to_canonical(image, src_affine)
    if label is not None:
        label, affine = to_canonical(label, src_affine)
    if brain is not None:
        brain, _ = to_canonical(brain, src_affine)
    return Case(
        case_id=ref.case_id,
        image=image,
        modalities=modalities if modalities is not None else tuple(ref.images),
        label=label,
        affine=affine,
        scheme=scheme,
        layout=ref.layout,
        source={
            **{m: str(p) for m, p in ref.images.items()},
            **({"label": str(ref.label)} if ref.label else {}),
        },
        source_affine=src_affine,
        source_shape=tuple(int(s) for s in shape),
        brain_mask=brain,
        meta={
            "patient": ref.patient or ref.case_id,
            "orientation": orientation_note(
                ref.layout, known=bool(extra.get("orientation_known", True))
            ),
        },
        **extra,  # type: ignore[arg-type]
    )


def _read_msd(ref: CaseRef, override: str | None, with_label: bool) -> Case:
    data, affine = nifti.read_image(ref.path)
    if data.ndim != 4 or data.shape[-1] != len(ref.channels):
        raise InputError(
            f"{ref.path}: shape {data.shape}; expected (X, Y, Z, {len(ref.channels)}) with channels "
            f"{', '.join(ref.channels)}"
        )
    for c, name in enumerate(ref.channels):
        if not np.any(data[..., c]):
            raise InputError(f"{ref.path}: channel {c} ({name}) is all zero; re-export the image")
    image = np.moveaxis(data, -1, 0)
    label = scheme = None
    grids = [(ref.path.name, image.shape[1:], affine)]
    if with_label and ref.label is not None:
        raw, laff = nifti.read_label(ref.label)
        grids.append((ref.label.name, raw.shape, laff))
        label, scheme = encode_labels(raw, ref.label, scheme=override or ref.scheme)
    check_same_grid(grids)
    image, mods = _ordered_channels(image, ref.channels)
    case = _canonical_case(
        ref,
        image,
        label,
        None,
        affine,
        scheme or get_scheme(override or "msd"),
        modalities=mods,
        orientation_known=nifti.orientation_known(ref.path),
    )
    case.source = {"image": str(ref.path), **({"label": str(ref.label)} if ref.label else {})}
    return case


def _read_h5(ref: CaseRef, override: str | None, with_label: bool) -> Case:
    image, label, affine = hdf5.read_h5_slice(ref.path, read_mask=with_label)
    scheme = get_scheme(override or "brats2020")
    brain = _h5_brain(image)
    case = _canonical_case(ref, image, label, brain, affine, scheme, modalities=hdf5.H5_CHANNELS)
    case.source = {"image": str(ref.path)}
    case.meta["intensity"] = "z-scored per slice over the whole slice (Kaggle preprocessing)"
    return case


def _h5_brain(image: np.ndarray) -> np.ndarray | None:
    """(X, Y, 1) brain of a Kaggle slice: pixels differing from the background in any channel.

    The Kaggle export z-scored each slice over the whole slice, so the zero background became
    one negative constant per channel and "nonzero" no longer finds the brain: statistics and
    the crop would then include the background, unlike training (measured on the 50 real
    slices with the bundled ``brats`` model: mean WT Dice 0.49 without this mask, 0.69 with
    it). The background value is each channel's most frequent value; a slice where no value
    fills at least 1% of the pixels has no constant background, and None is returned.
    """
    brain = np.zeros(image.shape[1:], dtype=bool)
    for chan in image:
        values, counts = np.unique(chan, return_counts=True)
        if counts.max() < 0.01 * chan.size:
            return None
        brain |= chan != values[np.argmax(counts)]
    return brain if brain.any() else None


#: LGG TIFFs carry no geometry: we assume 1 mm pixels and 1 mm slices, and say so.
LGG_ASSUMED_SPACING = (1.0, 1.0, 1.0)


def _read_lgg(ref: CaseRef, override: str | None, with_label: bool) -> Case:
    image, masks, slice_names, copies = tiff.read_lgg_stack(
        ref.path, require_masks=False, read_masks=with_label
    )
    label = None
    scheme = get_scheme(override) if override else LGG
    if with_label and masks is not None:
        label = scheme.encode(masks, source=str(ref.path))
    # Rows anterior -> posterior, columns patient right -> left, slices inferior -> superior
    # (established from the data: see gliomaseg.io.tiff), so the canonical RAS+ arrays are
    # the TIFF stack flipped and transposed; to_source() gives the TIFF order back.
    affine = tiff.lgg_affine(LGG_ASSUMED_SPACING)
    image, mods = _ordered_channels(image, tiff.LGG_CHANNELS)
    case = _canonical_case(
        ref,
        image,
        label,
        None,
        affine,
        scheme,
        modalities=mods,
        spacing_known=False,
        slice_names=tuple(slice_names),
    )
    case.source = {"folder": str(ref.path)}
    case.meta.update({f"{k}_note": v for k, v in copies.items()})
    case.meta["institution"] = tcga_site(ref.path.name)
    return case


def _read_nifti_file(ref: CaseRef, override: str | None, with_label: bool) -> Case:
    """A lone NIfTI: a label map when its values are few integers, else one image."""
    raw, affine = nifti.read_label(ref.path)
    raw = raw[..., None] if raw.ndim == 2 else raw
    known = nifti.orientation_known(ref.path)
    if raw.ndim == 4:
        raise InputError(
            f"{ref.path}: 4D image with {raw.shape[-1]} volumes outside an MSD imagesTr/imagesTs "
            "folder, so which volume is which modality is unknown; split it into "
            f"<id>_flair/_t1/_t1ce/_t2.nii.gz files, or put it in <dataset>/imagesTr/ with a "
            "dataset.json naming its channels"
        )
    if raw.ndim != 3:
        raise InputError(f"{ref.path}: {raw.ndim}D; expected a 2D or 3D image or label map")
    if _looks_like_labels(raw) or override:
        label, scheme = encode_labels(raw, ref.path, scheme=override)
        case = _canonical_case(
            ref, None, label, None, affine, scheme, modalities=(), orientation_known=known
        )
        case.source = {"label": str(ref.path)}
        return case
    data, _ = nifti.read_image(ref.path)
    data = data[..., None] if data.ndim == 2 else data
    role = classify(ref.path)
    modality = role.modality or "image"
    case = _canonical_case(
        ref, data[None], None, None, affine, None, modalities=(modality,), orientation_known=known
    )
    case.source = {modality: str(ref.path)}
    return case


def _looks_like_labels(raw: np.ndarray) -> bool:
    """A few (<= 8) non-negative integer values that a known label scheme explains."""
    if raw.dtype.kind == "f" and not np.array_equal(raw, np.rint(raw)):
        return False
    values = label_values(raw)
    if len(values) > 8 or min(values, default=0) < 0:
        return False
    try:
        guess_scheme(values)
    except ValueError:
        return False
    return True


_READERS = {
    "msd": _read_msd,
    "kaggle-h5": _read_h5,
    "lgg-tiff": _read_lgg,
    "nifti-file": _read_nifti_file,
}
