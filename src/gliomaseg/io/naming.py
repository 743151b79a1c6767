"""File-name conventions: which file of a case folder is which modality, label or mask.

Names are split into lower-case tokens on ``_``, ``-``, ``.`` and spaces, and each token is
looked up in small alias tables. This one mechanism covers BraTS 2018-2021
(``BraTS2021_00000_t1ce``), BraTS 2023+ (``BraTS-GLI-00000-000-t1c``), UPENN-GBM
(``UPENN-GBM-00055_11_T1GD``), TCGA skull-stripped exports (``TCGA-DU-7294_fla_bet``),
BraTS 2013 (``Flair_subtrMeanDivStd``, ``OTMultiClass``) and single-slice BraTS 2013 exports
(``BRATS_HG0005_T1C_slice95``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gliomaseg.case import MODALITIES

#: Token -> canonical modality.
MODALITY_ALIASES: dict[str, str] = {
    **dict.fromkeys(("flair", "t2f", "fla", "t2flair"), "flair"),
    **dict.fromkeys(("t1", "t1n", "t1w", "t1pre"), "t1"),
    **dict.fromkeys(("t1ce", "t1c", "t1gd", "t1post", "t1km"), "t1ce"),
    **dict.fromkeys(("t2", "t2w"), "t2"),
}
#: Tokens that mark the tumour segmentation.
LABEL_TOKENS = frozenset(
    {"seg", "segm", "segmentation", "label", "labels", "truth", "otmulticlass", "gt"}
)
#: Tokens that mark a brain mask (never a tumour label).
BRAIN_MASK_TOKENS = frozenset({"brainmask", "mask"})
#: Token sets that identify the naming convention, checked in order.
_BRATS2023_TOKENS = frozenset({"t1n", "t1c", "t2w", "t2f"})

_SPLIT = re.compile(r"[_\-.\s]+")


def stem(path: Path) -> str:
    """File name without ``.nii.gz`` / ``.nii`` / ``.h5`` / ``.tif`` extensions."""
    name = path.name
    for ext in (".nii.gz", ".nii", ".h5", ".hdf5", ".tiff", ".tif"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def tokens(name: str) -> list[str]:
    """Lower-case tokens of a file stem."""
    return [t for t in _SPLIT.split(name.lower()) if t]


@dataclass(frozen=True)
class FileRole:
    """What one file of a case folder holds.

    Attributes:
        kind: ``"image"``, ``"label"``, ``"brain_mask"`` or ``"unknown"``.
        modality: Canonical modality for images, else ``""``.
        token: The token that decided it (for error messages).
    """

    kind: str
    modality: str = ""
    token: str = ""


def classify(path: Path) -> FileRole:
    """Decide a file's role from its name.

    Label tokens win over modality tokens (``BraTS2021_00000_seg``), and a file with two
    different modality tokens is ``unknown`` rather than guessed.
    """
    toks = tokens(stem(path))
    for t in toks:
        if t in LABEL_TOKENS:
            return FileRole("label", token=t)
    for t in toks:
        if t in BRAIN_MASK_TOKENS:
            return FileRole("brain_mask", token=t)
    found = {MODALITY_ALIASES[t]: t for t in toks if t in MODALITY_ALIASES}
    if len(found) == 1:
        modality, token = next(iter(found.items()))
        return FileRole("image", modality=modality, token=token)
    return FileRole("unknown")


def naming_convention(roles: dict[Path, FileRole]) -> tuple[str, str | None]:
    """Name the layout of a folder of per-modality NIfTI files and its label scheme.

    Returns:
        (layout name, label scheme name or None when the naming says nothing about labels).
    """
    all_tokens = {t for p in roles for t in tokens(stem(p))}
    image_tokens = {r.token for r in roles.values() if r.kind == "image"}
    if "atropos" in all_tokens:
        return "brats2013-slices", "brats2013-atropos"
    if "otmulticlass" in all_tokens or "subtrmeandivstd" in all_tokens:
        return "brats2013", "brats2013"
    if image_tokens and image_tokens <= _BRATS2023_TOKENS:
        return "brats2023", "brats2023"
    if "upenn" in all_tokens or "automated" in all_tokens:
        return "upenn-gbm", "brats2020"
    if image_tokens and image_tokens <= {"flair", "t1", "t1ce", "t2"}:
        return "brats2020", "brats2020"
    return "named-nifti", None


#: Layouts whose naming promises all four modalities: a missing one is an error.
FOUR_MODALITY_LAYOUTS = frozenset({"brats2020", "brats2023", "upenn-gbm"})


def expected_name(layout: str, case_id: str, modality: str) -> str:
    """The file name a layout uses for a modality (for 'missing modality' messages)."""
    if layout == "brats2023":
        code = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}[modality]
        return f"{case_id}-{code}.nii.gz"
    if layout == "upenn-gbm":
        code = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1GD", "t2": "T2"}[modality]
        return f"{case_id}_{code}.nii.gz"
    return f"{case_id}_{modality}.nii.gz"


def case_id_before(name: str, token: str) -> str:
    """The part of a file stem before its role token (``BraTS2021_00000_t1ce`` -> ``BraTS2021_00000``).

    Returns ``""`` when the token is the first word (``Flair_subtrMeanDivStd``).
    """
    for match in re.finditer(r"[^_\-.\s]+", name):
        if match.group(0).lower() == token:
            return name[: match.start()].rstrip("_-. ")
    return ""


__all__ = [
    "FOUR_MODALITY_LAYOUTS",
    "LABEL_TOKENS",
    "MODALITIES",
    "MODALITY_ALIASES",
    "FileRole",
    "case_id_before",
    "classify",
    "expected_name",
    "naming_convention",
    "stem",
    "tokens",
]
