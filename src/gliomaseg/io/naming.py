"""File-name conventions: which file of a case folder is which modality, label or mask.

Names are split into words on ``_``, ``-``, ``.`` and spaces. A file's role is decided by its
**last** word, after dropping trailing processing words (``_bet``, ``_brain``,
``_subtrMeanDivStd``, ``_sliceN``...), looked up in small alias tables; everything before
that word is the case id. Words inside the id never count, so a case may be called
``Label_001`` or ``gt_mask_07``. This one rule covers BraTS 2018-2021
(``BraTS2021_00000_t1ce``), BraTS 2023+ (``BraTS-GLI-00000-000-t1c``), UPENN-GBM
(``UPENN-GBM-00055_11_T1GD``, ``..._automated_approx_segm``), TCGA skull-stripped exports
(``TCGA-DU-7294_fla_bet``), BraTS 2013 (``Flair_subtrMeanDivStd``, ``OTMultiClass``) and
single-slice BraTS 2013 exports (``BRATS_HG0005_T1C_slice95``).

This is not a guess at channel order: every file names its own modality, and a name whose
role word is not in the tables is an error, never a modality. Orders that files do not
state (nnU-Net ``_0000``... numbers, 4D volumes) come only from a ``dataset.json`` or, for
Decathlon ``imagesTr``/``imagesTs`` 4D files without one, the Decathlon's definition (see
:mod:`gliomaseg.io.layouts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gliomaseg.core.case import MODALITIES

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
#: Words that may follow the role word: processing steps, never roles (TCGA ``_fla_bet``,
#: BraTS 2013 ``Flair_subtrMeanDivStd``, template ``_RESCALED``).
PROCESSING_TOKENS = frozenset(
    {"bet", "brain", "skullstripped", "stripped", "subtrmeandivstd", "rescaled", "n4", "reg"}
)
#: Token sets that identify the naming convention, checked in order.
_BRATS2023_TOKENS = frozenset({"t1n", "t1c", "t2w", "t2f"})
#: UPENN-GBM ids (``UPENN-GBM-00055_11``): the id pattern, not a word anywhere in the name.
_UPENN_ID = re.compile(r"UPENN-GBM-\d+", re.IGNORECASE)

_SPLIT = re.compile(r"[_\-.\s]+")
_WORD = re.compile(r"[^_\-.\s]+")
_SLICE = re.compile(r"slice\d+")


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
        prefix: The part of the name before that token: the case id (``""`` when the token
            is the first word, as in ``Flair_subtrMeanDivStd``).
        suffix: Lower-case words from the role token to the end (``automated_approx_segm``
            gives ``("segm",)``; ``fla_bet`` gives ``("fla", "bet")``).
    """

    kind: str
    modality: str = ""
    token: str = ""
    prefix: str = ""
    suffix: tuple[str, ...] = ()


def classify(path: Path) -> FileRole:
    """Decide a file's role from the last word of its name (never from words in the id).

    Trailing processing words (:data:`PROCESSING_TOKENS`, ``sliceN``) are skipped first, so
    ``TCGA-DU-7294_fla_bet`` is FLAIR and ``BRATS_HG0005_T1C_slice95`` is T1c, while
    ``Label_001_flair`` is FLAIR of case ``Label_001`` and ``Label_001_seg`` its label.
    """
    name = stem(path)
    words = list(_WORD.finditer(name))
    while words and _is_processing(words[-1].group(0).lower()):
        words.pop()
    if not words:
        return FileRole("unknown")
    last = words[-1]
    token = last.group(0).lower()
    prefix = name[: last.start()].rstrip("_-. ")
    suffix = tuple(tokens(name[last.start() :]))
    if token in LABEL_TOKENS:
        return FileRole("label", token=token, prefix=prefix, suffix=suffix)
    if token in BRAIN_MASK_TOKENS:
        return FileRole("brain_mask", token=token, prefix=prefix, suffix=suffix)
    if token in MODALITY_ALIASES:
        return FileRole("image", MODALITY_ALIASES[token], token, prefix, suffix)
    return FileRole("unknown", prefix=name, suffix=suffix)


def _is_processing(word: str) -> bool:
    return word in PROCESSING_TOKENS or bool(_SLICE.fullmatch(word))


def common_id(roles: dict[Path, FileRole]) -> str:
    """The case id most files of a folder share (``""`` when none names one)."""
    ids = [r.prefix for r in roles.values() if r.kind != "unknown" and r.prefix]
    return max(sorted(set(ids)), key=ids.count) if ids else ""


def naming_convention(roles: dict[Path, FileRole]) -> tuple[str, str | None]:
    """Name the layout of a folder of per-modality NIfTI files and its label scheme.

    Only the words after the case id count (the role word and what follows it), so an id
    such as ``atropos_study_01`` or ``UPENN_copy`` does not change the layout.

    Returns:
        (layout name, label scheme name or None when the naming says nothing about labels).
    """
    case_id = common_id(roles)
    words: set[str] = set()
    for p, role in roles.items():
        name = stem(p)
        rest = name[len(case_id) :] if case_id and name.startswith(case_id) else name
        words.update(tokens(rest) if role.kind != "unknown" else ())
    image_tokens = {r.token for r in roles.values() if r.kind == "image"}
    if "atropos" in words:
        return "brats2013-slices", "brats2013-atropos"
    if "otmulticlass" in words or "subtrmeandivstd" in words:
        return "brats2013", "brats2013"
    if image_tokens and image_tokens <= _BRATS2023_TOKENS:
        return "brats2023", "brats2023"
    if "automated" in words or _UPENN_ID.match(case_id):
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


def tcga_site(name: str) -> str:
    """Tissue-source site of a TCGA patient name: ``TCGA_CS_4941_19960909`` -> ``CS``.

    The second ``_``-separated word; ``""`` when the name has fewer than three words.
    """
    parts = name.split("_")
    return parts[1] if len(parts) >= 3 else ""


__all__ = [
    "FOUR_MODALITY_LAYOUTS",
    "LABEL_TOKENS",
    "MODALITIES",
    "MODALITY_ALIASES",
    "FileRole",
    "classify",
    "common_id",
    "expected_name",
    "naming_convention",
    "stem",
    "tcga_site",
    "tokens",
]
