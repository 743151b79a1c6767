"""Decathlon (MSD) and nnU-Net dataset folders: ``imagesTr``/``labelsTr`` and ``dataset.json``.

An MSD case is one 4D image whose channel order comes from the dataset's ``dataset.json``
(else the MSD Task01 definition); an nnU-Net case is ``<id>_0000..0003.nii.gz`` whose channel
names ``dataset.json`` must give (gliomaseg never guesses a channel order).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from gliomaseg.core.errors import InputError
from gliomaseg.io import nifti
from gliomaseg.io.caseref import LAYOUT_CONFIG_NAME, CaseRef
from gliomaseg.io.naming import MODALITY_ALIASES, stem

#: MSD Task01 channel order (also the default nnU-Net channel map).
MSD_CHANNELS: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")

#: File stem of one nnU-Net channel: ``<id>_0000``.
NNUNET_NAME = re.compile(r"^(?P<id>.+)_(?P<ch>\d{4})$")

#: Folders whose 4D images are Decathlon cases (a 4D file elsewhere has no channel order).
MSD_IMAGE_FOLDERS = frozenset({"imagesTr", "imagesTs"})


def msd_ref(path: Path) -> CaseRef:
    """A Decathlon 4D image: channels from the dataset's ``dataset.json`` when it has one,
    else the MSD Task01 definition (FLAIR, T1w, T1gd, T2w): the dataset's own documented
    order, not a guess."""
    root = path.parent.parent
    labels = root / "labelsTr" / path.name
    channels = _channel_map(root) if (root / "dataset.json").exists() else MSD_CHANNELS
    return CaseRef(
        stem(path),
        "msd",
        path,
        label=labels if labels.exists() else None,
        scheme="msd",
        channels=channels,
        patient=stem(path),
    )


_CHANNEL_NAMES_FIX = (
    'add dataset.json with "channel_names" in your files\' order (e.g. {"0": "T1", "1": "T1ce", '
    f'"2": "T2", "3": "FLAIR"}}) to the dataset folder, or describe each case in {LAYOUT_CONFIG_NAME}'
)


def _channel_map(dataset_dir: Path, images: Path | None = None) -> tuple[str, ...]:
    """nnU-Net channel names from ``dataset.json`` (v2 ``channel_names`` or v1 ``modality``).

    Raises:
        InputError: no ``dataset.json``, or one without channel names. nnU-Net numbers the
            channels ``_0000``, ``_0001``... in whatever order the dataset's converter chose
            (its own BraTS 2021 conversion: T1, T1ce, T2, FLAIR; the MSD: FLAIR, T1w, T1gd,
            T2w), so reading them in a fixed order would be a guess.
    """
    dj = dataset_dir / "dataset.json"
    if not dj.exists():
        raise InputError(
            f"{images or dataset_dir}: nnU-Net-style images (<id>_0000.nii.gz...) but no {dj}, so "
            "which file is which modality is unknown (nnU-Net's BraTS conversion uses T1, T1ce, "
            f"T2, FLAIR; the MSD uses FLAIR, T1w, T1gd, T2w) and gliomaseg will not guess; "
            f"{_CHANNEL_NAMES_FIX}"
        )
    try:
        raw = json.loads(dj.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{dj}: cannot read dataset.json ({err}); fix the JSON") from None
    names = raw.get("channel_names") or raw.get("modality") if isinstance(raw, dict) else None
    if not isinstance(names, dict) or not names:
        raise InputError(
            f"{dj}: no 'channel_names' (or 'modality') mapping, so which file is which modality "
            f"is unknown; {_CHANNEL_NAMES_FIX}"
        )
    out = []
    for key in sorted(names, key=_channel_index(dj)):
        token = re.sub(r"[^a-z0-9]", "", str(names[key]).lower())
        if token not in MODALITY_ALIASES:
            raise InputError(
                f"{dj}: channel {key} '{names[key]}' is not a known modality "
                f"({sorted(set(MODALITY_ALIASES))}); rename it in channel_names"
            )
        out.append(MODALITY_ALIASES[token])
    return tuple(out)


def _channel_index(dj: Path) -> Callable[[str], int]:
    def index(key: str) -> int:
        try:
            return int(key)
        except ValueError:
            raise InputError(
                f'{dj}: channel key \'{key}\' is not a number; use "0", "1"... in channel_names'
            ) from None

    return index


def nnunet_ref(images_dir: Path, case_id: str, *, labels_dir: Path) -> CaseRef:
    """The nnU-Net case ``case_id`` in ``images_dir`` (channels named by ``dataset.json``)."""
    channels = _channel_map(images_dir.parent, images_dir)
    images: dict[str, Path] = {}
    for k, modality in enumerate(channels):
        p = images_dir / f"{case_id}_{k:04d}.nii.gz"
        if not p.exists():
            raise InputError(
                f"{p}: missing channel {k} ({modality}) of nnU-Net case {case_id}; add the file"
            )
        images[modality] = p
    label = labels_dir / f"{case_id}.nii.gz"
    return CaseRef(
        case_id,
        "nnunet",
        images_dir,
        images,
        label if label.exists() else None,
        scheme="msd",
        channels=channels,
        patient=case_id,
    )


def dataset_refs(dataset: Path) -> list[CaseRef]:
    """Every case of a dataset folder holding ``imagesTr``/``imagesTs`` (nnU-Net or MSD)."""
    refs: list[CaseRef] = []
    for sub in ("imagesTr", "imagesTs"):
        folder = dataset / sub
        if folder.is_dir():
            files = sorted(
                p for p in folder.iterdir() if nifti.is_nifti(p) and not p.name.startswith(".")
            )
            ids = sorted({m.group("id") for p in files if (m := NNUNET_NAME.match(stem(p)))})
            if ids:
                labels = dataset / "labelsTr"
                refs += [nnunet_ref(folder, cid, labels_dir=labels) for cid in ids]
            else:
                refs += [msd_ref(p) for p in files]
    return refs
