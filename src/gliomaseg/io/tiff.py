"""Kaggle LGG segmentation dataset (Buda et al. 2019): one folder of TIFF slices per patient.

``TCGA_<inst>_<id>_<date>_<n>.tif`` is slice n (1-based), 256x256x3 uint8 with channels
pre-contrast (T1), FLAIR, post-contrast (T1Gd); ``..._<n>_mask.tif`` is its binary FLAIR
abnormality mask (0/255). A patient folder is one stack ordered by ``n`` (numerically: slice
10 comes after slice 9, not after slice 1). The TIFFs carry no voxel size, so volumes use an
assumed spacing and are flagged ``spacing_known = False``.

Where a sequence was missing, the dataset's authors copied FLAIR into its channel; such
channels are detected (identical to FLAIR on every slice) and named in ``meta``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

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
        m = _SLICE.match(p.stem)
        if m is None:
            raise ValueError(
                f"{p}: not an LGG slice name (<patient>_<n>.tif or <patient>_<n>_mask.tif); "
                "rename or remove it"
            )
        target = masks if m.group("mask") else images
        n = int(m.group("n"))
        if n in target:
            raise ValueError(f"{p}: slice {n} appears twice (also {target[n].name}); remove one")
        target[n] = p
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise ValueError(
            f"{masks[orphans[0]]}: mask without its image slice; add the image or remove the mask"
        )
    return [(n, images[n], masks.get(n)) for n in sorted(images)]


def _read_tif(path: Path) -> NDArray[np.generic]:
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except Exception as err:
        raise ValueError(
            f"{path}: not a readable TIFF ({type(err).__name__}: {err}); "
            "the file is corrupt or truncated: re-download it"
        ) from None


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
        ValueError naming the file: no slices, a missing mask, mismatched sizes, bad channels.
    """
    slices = list_slices(folder)
    if not slices:
        raise ValueError(
            f"{folder}: no <patient>_<n>.tif slices found; point at an LGG patient folder"
        )
    if not read_masks:
        slices = [(n, img, None) for n, img, _ in slices]
        require_masks = False
    missing = [img for _, img, mask in slices if mask is None]
    has_masks = len(missing) < len(slices)
    if missing and (require_masks or has_masks):
        raise ValueError(
            f"{missing[0]}: slice has no mask ({missing[0].stem}_mask.tif missing; "
            f"{len(missing)} of {len(slices)} slices lack one); add the masks or remove the slices"
        )
    first = _read_tif(slices[0][1])
    if first.ndim != 3 or first.shape[-1] != 3:
        raise ValueError(f"{slices[0][1]}: shape {first.shape}; expected (H, W, 3) RGB slices")
    h, w = first.shape[:2]
    image = np.empty((3, h, w, len(slices)), dtype=np.float32)
    masks = np.empty((h, w, len(slices)), dtype=np.uint8) if has_masks else None
    for k, (_, img_path, mask_path) in enumerate(slices):
        arr = first if k == 0 else _read_tif(img_path)
        if arr.shape != first.shape:
            raise ValueError(
                f"{img_path}: shape {arr.shape} differs from {slices[0][1].name} {first.shape}"
            )
        image[..., k] = np.moveaxis(arr, -1, 0)
        if masks is not None and mask_path is not None:
            m = _read_tif(mask_path)
            m = m[..., 0] if m.ndim == 3 else m
            if m.shape != (h, w):
                raise ValueError(
                    f"{mask_path}: mask shape {m.shape} differs from its image {(h, w)}"
                )
            masks[..., k] = m
    meta = {
        name: "copy of FLAIR (sequence missing in the source)"
        for c, name in enumerate(LGG_CHANNELS)
        if name != "flair" and np.array_equal(image[c], image[1])
    }
    return image, masks, [p.stem for _, p, _ in slices], meta
