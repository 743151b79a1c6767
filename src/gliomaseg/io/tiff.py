"""Kaggle LGG segmentation dataset (Buda et al. 2019): one folder of TIFF slices per patient.

``TCGA_<inst>_<id>_<date>_<n>.tif`` is slice n (1-based), 256x256x3 uint8 with channels
pre-contrast (T1), FLAIR, post-contrast (T1Gd); ``..._<n>_mask.tif`` is its binary FLAIR
abnormality mask (0/255). A patient folder is one stack ordered by ``n`` (numerically: slice
10 comes after slice 9, not after slice 1). The TIFFs carry no voxel size, so volumes use an
assumed spacing and are flagged ``spacing_known = False``.

Where a sequence was missing, the dataset's authors copied FLAIR into its channel; such
channels are detected (identical to FLAIR on every slice) and named in ``meta``.

Orientation (:data:`LGG_AXES`, encoded by :func:`lgg_affine`). The TIFFs carry no geometry, so
it was established from the data (all 88 development patients, five institutions):

* rows run anterior -> posterior: the orbits, eyes and nose are at the top of the low slices
  and the cerebellum at the bottom; tumours recorded as frontal in ``data.csv``
  (``tumor_location``) lie in the upper half of the head, parietal/occipital ones lower;
* slice number ``n`` runs inferior -> superior (skull base and cerebellum at ``n`` = 1, the
  vertex last);
* columns run patient right -> left. Anatomy cannot tell left from right; this is the DICOM
  display convention of the source (TCIA axial DICOM shown as stored: column 0 = patient
  right, "radiological" view), and it agrees with the clinical laterality in ``data.csv``
  (``laterality``, coded 1 Left, 2 Midline, 3 Right: the alphabetical order of TCGA's
  values, like the file's other coded columns) for all but a stray few of the lateral
  tumours; the swapped convention would agree with almost none.

``tests/test_realdata_orientation.py`` checks this on the real patients (clinical laterality,
the head's symmetry axis in report panels).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.errors import InputError
from gliomaseg.core.geometry import orientation_code, reorient
from gliomaseg.io import limits
from gliomaseg.io.atomic import atomic_path

#: Directions of increasing row, column and slice number (see the module docstring).
LGG_AXES = "PLS"


def lgg_affine(spacing: tuple[float, float, float]) -> NDArray[np.float64]:
    """Voxel (row, column, slice) -> scanner RAS+ mm matrix of an LGG stack (:data:`LGG_AXES`).

    Args:
        spacing: Row, column and slice spacing in mm (assumed: the TIFFs store none).
    """
    rows, cols, slices = (float(s) for s in spacing)
    affine = np.zeros((4, 4))
    affine[1, 0] = -rows  # increasing row: towards posterior (-y)
    affine[0, 1] = -cols  # increasing column: towards the patient's left (-x)
    affine[2, 2] = slices  # increasing slice number: towards superior (+z)
    affine[3, 3] = 1.0
    return affine


#: Channel order of the LGG TIFFs, as canonical modality names.
LGG_CHANNELS: tuple[str, ...] = ("t1", "flair", "t1ce")
_SLICE = re.compile(r"^(?P<patient>.+)_(?P<n>\d+)(?P<mask>_mask)?$")


def is_lgg_folder(folder: Path) -> bool:
    """True when a folder holds ``*_<n>.tif`` slices (with or without masks)."""
    return any(_SLICE.match(p.stem) for p in folder.glob("*.tif"))


def list_slices(folder: Path) -> list[tuple[int, Path, Path | None]]:
    """Slice number, image file and mask file (or None) for each slice, in slice order.

    Raises:
        ValueError: two files claim the same slice number, or a mask has no image.
    """
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    for p in folder.glob("*.tif"):
        if p.stem.endswith("_pred") and _SLICE.match(p.stem[: -len("_pred")]):
            continue  # a prediction gliomaseg segment wrote (older versions wrote them here)
        m = _SLICE.match(p.stem)
        if m is None:
            raise InputError(
                f"{p}: not an LGG slice name (<patient>_<n>.tif or <patient>_<n>_mask.tif); "
                "rename or remove it"
            )
        target = masks if m.group("mask") else images
        n = int(m.group("n"))
        if n in target:
            raise InputError(f"{p}: slice {n} appears twice (also {target[n].name}); remove one")
        target[n] = p
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise InputError(
            f"{masks[orphans[0]]}: mask without its image slice; add the image or remove the mask"
        )
    return [(n, images[n], masks.get(n)) for n in sorted(images)]


_CORRUPT = "the file is corrupt or truncated: re-download it"


@contextmanager
def _tifffile_notes() -> Iterator[list[str]]:
    """Collect what tifffile would log about a damaged file (instead of printing it)."""
    notes: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        notes.append(record.getMessage())
        return False

    logger = logging.getLogger("tifffile")
    logger.addFilter(keep)
    try:
        yield notes
    finally:
        logger.removeFilter(keep)


def _read_tif(path: Path) -> NDArray[np.generic]:
    """The first page of a TIFF, after checking its size and that its data lie in the file.

    Raises:
        InputError naming the file: unreadable, truncated (data past the end of the file, or
        tifffile had to skip damaged tags), or over :data:`limits.MAX_SLICE_BYTES`.
    """
    import tifffile

    with _tifffile_notes() as notes:
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first if len(tif.pages) else None
                if page is None or page.dtype is None or notes:
                    why = notes[0] if notes else "no image page of a known data type"
                    raise InputError(f"{path}: not a readable TIFF ({why}); {_CORRUPT}")
                nbytes = math.prod(page.shape) * page.dtype.itemsize
                if nbytes > limits.MAX_SLICE_BYTES:
                    raise InputError(
                        f"{path}: TIFF page of {page.shape} {page.dtype} is "
                        f"{limits.gib(nbytes)}, over the {limits.gib(limits.MAX_SLICE_BYTES)} "
                        "limit (gliomaseg.io.limits.MAX_SLICE_BYTES); pass 2D slices"
                    )
                size = path.stat().st_size
                spans = zip(page.dataoffsets, page.databytecounts, strict=True)
                if not page.dataoffsets or any(o + n > size or n <= 0 for o, n in spans):
                    raise InputError(
                        f"{path}: not a readable TIFF (image data end past the end of the "
                        f"file); {_CORRUPT}"
                    )
                arr = np.asarray(page.asarray())
        except InputError:
            raise
        except Exception as err:
            raise InputError(
                f"{path}: not a readable TIFF ({type(err).__name__}: {err}); {_CORRUPT}"
            ) from None
    if notes:
        raise InputError(f"{path}: not a readable TIFF ({notes[0]}); {_CORRUPT}")
    return arr


def _read_mask(path: Path, shape: tuple[int, int]) -> NDArray[np.uint8]:
    """A binary LGG mask (0/255 or 0/1, uint8 or bool; RGB masks use channel 0)."""
    m = _read_tif(path)
    m = m[..., 0] if m.ndim == 3 else m
    if m.dtype not in (np.uint8, np.bool_):
        raise InputError(f"{path}: mask data type {m.dtype}; expected uint8 (0/255), re-export it")
    if m.shape != shape:
        raise InputError(
            f"{path}: mask shape {m.shape} differs from its image {shape}; "
            "pair each slice with its own mask"
        )
    values = set(np.unique(m).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        raise InputError(
            f"{path}: mask is not binary (values {sorted(values)[:8]}); "
            "expected 0/255 (or 0/1): threshold it or re-export it"
        )
    return m.astype(np.uint8, copy=False)


def read_lgg_stack(
    folder: Path, *, require_masks: bool = True, read_masks: bool = True
) -> tuple[NDArray[np.float32], NDArray[np.generic] | None, list[str], dict[str, str]]:
    """Read an LGG patient folder as one stack.

    Args:
        folder: The patient folder.
        require_masks: Error when any slice lacks its ``_mask.tif`` (training, evaluation);
            with False, a folder with no masks at all reads as image-only.
        read_masks: With False, masks are not read at all (segmenting a new study).

    Returns:
        image (3, H, W, S) float32 channels pre-contrast, FLAIR, post-contrast (0-255);
        raw masks (H, W, S) uint8 (0/255) or None; slice file stems in slice order;
        meta (channels that are copies of FLAIR).

    Raises:
        InputError naming the file: no slices, a missing mask, a corrupt or truncated TIFF,
        mismatched sizes or data types, bad channels, a non-binary mask.
    """
    slices = list_slices(folder)
    if not slices:
        raise InputError(
            f"{folder}: no <patient>_<n>.tif slices found; point at an LGG patient folder"
        )
    if not read_masks:
        slices = [(n, img, None) for n, img, _ in slices]
        require_masks = False
    missing = [img for _, img, mask in slices if mask is None]
    has_masks = len(missing) < len(slices)
    if missing and (require_masks or has_masks):
        raise InputError(
            f"{missing[0]}: slice has no mask ({missing[0].stem}_mask.tif missing; "
            f"{len(missing)} of {len(slices)} slices lack one); add the masks or remove the slices"
        )
    first = _read_tif(slices[0][1])
    if first.ndim != 3 or first.shape[-1] != 3 or first.dtype != np.uint8:
        raise InputError(
            f"{slices[0][1]}: {first.dtype} array of shape {first.shape}; "
            "expected (H, W, 3) uint8 RGB slices"
        )
    h, w = first.shape[:2]
    image = np.empty((3, h, w, len(slices)), dtype=np.float32)
    masks = np.empty((h, w, len(slices)), dtype=np.uint8) if has_masks else None
    for k, (_, img_path, mask_path) in enumerate(slices):
        arr = first if k == 0 else _read_tif(img_path)
        if arr.shape != first.shape or arr.dtype != first.dtype:
            raise InputError(
                f"{img_path}: {arr.dtype} {arr.shape} differs from {slices[0][1].name} "
                f"({first.dtype} {first.shape}); every slice of a patient must match"
            )
        image[..., k] = np.moveaxis(arr, -1, 0)
        if masks is not None and mask_path is not None:
            masks[..., k] = _read_mask(mask_path, (h, w))
    meta = {
        name: "copy of FLAIR (sequence missing in the source)"
        for c, name in enumerate(LGG_CHANNELS)
        if name != "flair" and np.array_equal(image[c], image[1])
    }
    return image, masks, [p.stem for _, p, _ in slices], meta


def _to_uint8(volume: NDArray[Any]) -> NDArray[np.uint8]:
    """Scale a whole volume linearly from [min, max] to 0..255 (constant -> zeros)."""
    arr = np.asarray(volume, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.rint((arr - lo) / (hi - lo) * 255.0).astype(np.uint8)


def write_lgg_stack(
    volumes: Sequence[NDArray[Any]],
    label: NDArray[Any] | None,
    affine: NDArray[np.float64],
    folder: Path,
    *,
    case_id: str,
) -> Path:
    """Write a case as an LGG patient folder: one RGB TIFF (and one mask) per axial slice.

    Args:
        volumes: Three (X, Y, Z) volumes in :data:`LGG_CHANNELS` order, each scaled to
            0..255 over the volume.
        label: (X, Y, Z) internal codes (any non-zero is tumour), or None for no masks.
        affine: 4x4 affine of the arrays: they are reoriented to :data:`LGG_AXES`.
        folder: The patient folder to write (``<folder>/<case_id>_<n>.tif``).
        case_id: The patient name used in the file names.

    Returns:
        ``folder``.
    """
    import tifffile

    cid = case_id
    axes = orientation_code(affine)
    rgb = np.stack([reorient(_to_uint8(v), axes, LGG_AXES) for v in volumes], axis=-1)
    label = None if label is None else np.asarray(reorient(np.asarray(label), axes, LGG_AXES)) != 0
    for z in range(rgb.shape[2]):
        n = z + 1
        with atomic_path(folder / f"{cid}_{n}.tif") as tmp:
            tifffile.imwrite(tmp, np.ascontiguousarray(rgb[:, :, z, :]), photometric="rgb")
        if label is not None:
            mask = np.where(label[:, :, z], 255, 0).astype(np.uint8)
            with atomic_path(folder / f"{cid}_{n}_mask.tif") as tmp:
                tifffile.imwrite(tmp, mask, photometric="minisblack")
    return folder
