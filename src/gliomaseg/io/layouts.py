"""Find the cases under a path and read each one into a canonical :class:`~gliomaseg.core.case.Case`.

Discovery (:func:`find_cases`) looks only at names and headers and returns :class:`CaseRef`
records; reading (:func:`read_case`) loads voxels, checks them and reorients to RAS+.
Splitting the two lets batch commands list work cheaply and report one bad case without
stopping the others.

Supported layouts (``layout`` names):

=====================  ==================================================================
``brats2020``          ``<id>_{flair,t1,t1ce,t2}[_seg].nii[.gz]`` (BraTS 2018-2021)
``brats2023``          ``<id>-{t2f,t1n,t1c,t2w}[-seg].nii.gz``
``upenn-gbm``          ``<id>_{FLAIR,T1,T1GD,T2}.nii.gz`` + ``<id>_automated_approx_segm``
``brats2013``          ``Flair_subtrMeanDivStd``, ``T1c_...``, ``OTMultiClass``, brainmask
``brats2013-slices``   2D NIfTI slices ``<id>_{FLAIR,T1,T1C,T2,MASK,atropos_truth}_sliceN``
``named-nifti``        any per-modality NIfTI files whose names end in a modality word
``msd``                Decathlon Task01: one 4D ``imagesTr/<id>.nii.gz`` + ``labelsTr/<id>``
                       (channels from ``dataset.json``, else FLAIR, T1w, T1gd, T2w)
``nnunet``             ``imagesTr/<id>_0000..0003.nii.gz`` + ``labelsTr`` + ``dataset.json``
                       (required: without its channel names the order is refused)
``config``             any names, mapped by ``gliomaseg-layout.json`` (see :class:`LayoutConfig`)
``kaggle-h5``          ``volume_<V>_slice_<S>.h5`` (one case per slice, patient ``volume_V``)
``lgg-tiff``           ``<patient>/<patient>_<n>.tif`` + ``_<n>_mask.tif`` (one stack)
``nifti-file``         a single NIfTI file: a label map or one image
=====================  ==================================================================
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from gliomaseg.core.case import MODALITIES, Case
from gliomaseg.core.errors import InputError, one_line
from gliomaseg.core.geometry import check_same_grid, to_canonical
from gliomaseg.core.labels import LGG, LabelScheme, get_scheme, guess_scheme
from gliomaseg.io import hdf5, nifti, tiff
from gliomaseg.io.naming import (
    FOUR_MODALITY_LAYOUTS,
    MODALITY_ALIASES,
    FileRole,
    classify,
    common_id,
    expected_name,
    naming_convention,
    stem,
)

log = logging.getLogger(__name__)

LAYOUT_CONFIG_NAME = "gliomaseg-layout.json"
#: MSD Task01 channel order (also the default nnU-Net channel map).
MSD_CHANNELS: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
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


_GENERIC_FOLDER_NAMES = frozenset({"images", "image", "imgs", "anat"})
_NNUNET = re.compile(r"^(?P<id>.+)_(?P<ch>\d{4})$")
#: Folders whose 4D images are Decathlon cases (a 4D file elsewhere has no channel order).
_MSD_IMAGE_FOLDERS = frozenset({"imagesTr", "imagesTs"})


@dataclass(frozen=True)
class LayoutConfig:
    """Maps arbitrary file names to roles, for folders no built-in convention covers.

    Stored as JSON (``gliomaseg-layout.json`` in the case folder, or given with
    ``--layout-config``)::

        {"modalities": {"flair": "images/*_fla_bet.nii.gz", "t1": "images/*_t1_bet.nii.gz"},
         "label": "fusion/mav.nii.gz", "label_scheme": "brats2020", "brain_mask": null}

    Patterns are globs relative to the case folder and must match exactly one file inside
    it: an absolute pattern or one with a ``..`` part is refused when the config is loaded,
    and a match that resolves (following symlinks) outside the case folder is refused when
    the case is discovered.

    Attributes:
        source: The JSON file the config came from (named in error messages), if any.
    """

    modalities: dict[str, str]
    label: str | None = None
    label_scheme: str | None = None
    brain_mask: str | None = None
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = self.source or "layout config"
        for role, pattern in self.patterns().items():
            _check_pattern(where, role, pattern)

    def patterns(self) -> dict[str, str]:
        """Role (modality, ``label``, ``brain_mask``) -> glob, for the roles given."""
        extra = {"label": self.label, "brain_mask": self.brain_mask}
        return {**self.modalities, **{k: v for k, v in extra.items() if v is not None}}

    @classmethod
    def load(cls, path: Path) -> LayoutConfig:
        """Read and validate a layout config file.

        Raises:
            InputError: unreadable JSON, missing or unknown keys, an unknown label scheme, or
                a pattern that is not a glob inside the case folder.
        """
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read layout config ({err}); fix the JSON") from None
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("modalities"), dict)
            or not raw["modalities"]
        ):
            raise InputError(f"{path}: layout config needs a non-empty 'modalities' mapping")
        unknown = set(raw) - {"modalities", "label", "label_scheme", "brain_mask"}
        if unknown:
            raise InputError(f"{path}: unknown layout config key(s) {sorted(unknown)}")
        if raw.get("label_scheme"):
            try:
                get_scheme(raw["label_scheme"])
            except ValueError as err:
                raise InputError(f"{path}: {one_line(err)}") from None
        return cls(
            modalities={str(k): v for k, v in raw["modalities"].items()},
            label=raw.get("label"),
            label_scheme=raw.get("label_scheme"),
            brain_mask=raw.get("brain_mask"),
            source=path,
        )


def _check_pattern(where: Path | str, role: str, pattern: object) -> None:
    """Refuse a config pattern that is not a relative glob staying inside the case folder."""
    fix = 'use a glob relative to the case folder, e.g. "images/*_flair.nii.gz"'
    if not isinstance(pattern, str) or not pattern.strip():
        raise InputError(f"{where}: pattern for {role} is {pattern!r}, not a file glob; {fix}")
    parts = PureWindowsPath(pattern).parts  # splits on both / and \\
    if PurePosixPath(pattern).is_absolute() or PureWindowsPath(pattern).anchor or ".." in parts:
        raise InputError(
            f"{where}: pattern '{pattern}' for {role} points outside the case folder (absolute "
            f"or '..'); {fix}, and copy or move the file into the case folder"
        )


@dataclass(frozen=True)
class CaseRef:
    """Where one case's files are, found from names and headers only.

    Attributes:
        case_id: Case identifier.
        layout: Layout name (see module docstring).
        path: Case folder, or the file for single-file layouts.
        images: Canonical modality -> file (per-modality layouts).
        label: Segmentation file, if any.
        scheme: Label scheme name implied by the layout (None: guess from the values).
        brain_mask: Brain-mask file, if the layout ships one.
        channels: Modality of each channel of a 4D file (MSD).
        patient: Patient identifier for patient-level splits.
    """

    case_id: str
    layout: str
    path: Path
    images: dict[str, Path] = field(default_factory=dict)
    label: Path | None = None
    scheme: str | None = None
    brain_mask: Path | None = None
    channels: tuple[str, ...] = ()
    patient: str = ""


# --------------------------------------------------------------------------- discovery


def find_cases(
    path: str | Path, *, config: LayoutConfig | None = None, max_depth: int = 3
) -> list[CaseRef]:
    """Every case under ``path``: a case folder, a file, or a folder of cases (recursively).

    Like :func:`discover`, but any case that cannot be discovered is an error.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InputError: no case found (the message says what was expected), a folder that is a
            case but has unknown/duplicate files, or two cases with one id (the message
            names them).
    """
    refs, bad = discover(path, config=config, max_depth=max_depth)
    if bad:
        where, message = bad[0]
        raise InputError(message if str(where) in message else f"{where}: {message}")
    return refs


def discover(
    path: str | Path, *, config: LayoutConfig | None = None, max_depth: int = 3
) -> tuple[list[CaseRef], list[tuple[Path, str]]]:
    """Cases under one path; one bad case does not hide the others.

    Same as :func:`discover_all` with one input: a path that is itself a bad case (or holds
    nothing) raises; bad cases further down are returned as (path, one-line reason).
    """
    return discover_all([path], config=config, max_depth=max_depth)


def discover_all(
    paths: Sequence[str | Path],
    *,
    config: LayoutConfig | None = None,
    cases_only: bool = False,
    max_depth: int = 3,
) -> tuple[list[CaseRef], list[tuple[Path, str]]]:
    """The cases under all inputs of one command, with case ids unique across all of them.

    Each path is a case folder, a file, or a folder searched up to ``max_depth`` levels down.
    A folder that is a case is not searched further; any other folder (loose label maps,
    gliomaseg outputs, ``.h5`` slices, nothing) is, so loose files never hide cases.

    Case ids name outputs and cache entries, so two different cases with one id (compared
    case-insensitively) are a collision: the first found keeps the id, the second becomes a
    bad entry naming both folders. The same case reached twice (one folder passed twice, or
    a folder and its parent) is kept once. Loose single NIfTI files (layout ``nifti-file``)
    are listed by file stem and are not checked.

    Args:
        paths: The command's inputs, in order (the order decides which colliding case wins).
        config: Layout config for folders no built-in convention covers.
        cases_only: Leave out loose single NIfTI files (``segment``, ``prepare``): an input
            holding nothing else is a bad entry saying what gliomaseg expects; loose files
            beside cases are logged (INFO) as skipped.
        max_depth: How many folder levels below each input are searched.

    Returns:
        (cases in input order, then path order; bad entries as (path, one-line reason)).

    Raises:
        FileNotFoundError / InputError: with a single input, when it is missing, is itself a
            bad case, or holds no case. With several inputs these become bad entries.
    """
    refs: list[CaseRef] = []
    bad: list[tuple[Path, str]] = []
    seen: dict[str, CaseRef] = {}
    for path in map(Path, paths):
        try:
            found, failed = _discover_one(path, config=config, max_depth=max_depth)
            if cases_only:
                found = _drop_loose(path, found, failed)
        except (ValueError, FileNotFoundError) as err:
            if len(paths) == 1:
                raise
            bad.append((path, one_line(err)))
            continue
        kept, collisions = _unique_ids(found, seen)
        refs += kept
        bad += failed + collisions
    return refs, bad


def _discover_one(
    path: Path, *, config: LayoutConfig | None, max_depth: int
) -> tuple[list[CaseRef], list[tuple[Path, str]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; check the path")
    bad: list[tuple[Path, str]] = []
    refs = [_file_ref(path)] if path.is_file() else _walk(path, config, max_depth, bad)
    if not refs and not bad:
        raise InputError(
            f"{path}: no cases found; expected a case folder (e.g. <id>_flair.nii.gz, "
            "<id>-t2f.nii.gz, <id>_0000.nii.gz), a folder of case folders, an LGG patient "
            f"folder of .tif slices, .h5 slices, or a folder described by {LAYOUT_CONFIG_NAME}"
        )
    return refs, bad


def _walk(
    folder: Path, config: LayoutConfig | None, depth: int, bad: list[tuple[Path, str]]
) -> list[CaseRef]:
    """Cases in ``folder`` and below; a broken case below ``folder`` is appended to ``bad``.

    Raises:
        InputError: ``folder`` itself is a case folder that cannot be used.
    """
    case = _folder_case(folder, config)
    if case is not None:
        return case
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    refs: list[CaseRef] = []
    for p in entries:
        if p.is_file() and (nifti.is_nifti(p) or p.suffix.lower() in (".h5", ".hdf5")):
            try:  # loose files: .h5 slices, label maps, gliomaseg outputs, templates
                refs.append(_file_ref(p))
            except ValueError as err:
                bad.append((p, one_line(err)))
    for sub in (p for p in entries if p.is_dir()) if depth > 0 else ():
        try:
            refs += _walk(sub, config, depth - 1, bad)
        except ValueError as err:
            bad.append((sub, one_line(err)))
    return refs


def _folder_case(folder: Path, config: LayoutConfig | None) -> list[CaseRef] | None:
    """The case(s) ``folder`` itself forms, or None when it is not a case folder."""
    local_config = folder / LAYOUT_CONFIG_NAME
    if config is None and local_config.exists():
        return [_config_ref(folder, LayoutConfig.load(local_config))]
    if config is not None and _config_matches(folder, config):
        return [_config_ref(folder, config)]
    if (folder / "imagesTr").is_dir() or (folder / "imagesTs").is_dir():
        return _dataset_refs(folder)
    if tiff.is_lgg_folder(folder):
        return [CaseRef(folder.name, "lgg-tiff", folder, scheme="lgg", patient=folder.name)]
    niftis = sorted(
        p for p in folder.iterdir() if p.is_file() and nifti.is_nifti(p) and p.name[0] != "."
    )
    nnunet_ids = sorted({m.group("id") for p in niftis if (m := _NNUNET.match(stem(p)))})
    if nnunet_ids:
        labels_dir = folder.parent / "labelsTr"
        return [_nnunet_ref(folder, cid, labels_dir=labels_dir) for cid in nnunet_ids]
    roles = {p: classify(p) for p in niftis}
    if any(r.kind == "image" for r in roles.values()):
        return [_modality_folder_ref(folder, roles)]
    return None


def _drop_loose(path: Path, found: list[CaseRef], failed: list[tuple[Path, str]]) -> list[CaseRef]:
    """``found`` without loose single files; an input holding only loose files is an error."""
    cases = [r for r in found if r.layout != "nifti-file"]
    loose = [r.path for r in found if r.layout == "nifti-file"]
    if loose and not cases and not failed:
        what = (
            "is a single NIfTI file"
            if path.is_file()
            else (
                f"holds only {len(loose)} loose NIfTI file(s) that belong to no case "
                f"(e.g. {loose[0].name}: a label map or gliomaseg output)"
            )
        )
        raise InputError(
            f"{path}: {what}, not a case; expected a case folder with the four modalities "
            "(<id>_flair/_t1/_t1ce/_t2.nii.gz or <id>-t2f/-t1n/-t1c/-t2w.nii.gz), a folder of "
            f"case folders, or a folder described by {LAYOUT_CONFIG_NAME}"
        )
    if loose:
        log.info(
            "%s: skipped %d loose NIfTI file(s) that belong to no case (e.g. %s)",
            path,
            len(loose),
            loose[0],
        )
    return cases


def _unique_ids(
    refs: list[CaseRef], seen: dict[str, CaseRef]
) -> tuple[list[CaseRef], list[tuple[Path, str]]]:
    """``refs`` without cases already in ``seen``; a second case with a taken id is bad."""
    kept: list[CaseRef] = []
    bad: list[tuple[Path, str]] = []
    for ref in refs:
        loose = ref.layout == "nifti-file"
        key = f"file:{ref.path.resolve()}" if loose else ref.case_id.casefold()
        first = seen.setdefault(key, ref)
        if first is ref:
            kept.append(ref)
        elif loose or (first.case_id, first.path.resolve()) == (ref.case_id, ref.path.resolve()):
            continue  # the same case (or file) reached through two inputs
        else:
            bad.append(
                (
                    ref.path,
                    f"{ref.path}: case id {ref.case_id} is already taken by {first.path} "
                    "(outputs and cache entries are named by case id); rename one case "
                    "(its folder and the id in its file names) or process them in separate runs",
                )
            )
    return kept, bad


def _file_ref(path: Path) -> CaseRef:
    if path.suffix.lower() in (".h5", ".hdf5"):
        parsed = hdf5.parse_name(path)
        patient = f"volume_{parsed[0]}" if parsed else stem(path)
        return CaseRef(stem(path), "kaggle-h5", path, scheme="brats2020", patient=patient)
    if path.suffix.lower() in (".tif", ".tiff"):
        return CaseRef(
            path.parent.name, "lgg-tiff", path.parent, scheme="lgg", patient=path.parent.name
        )
    if not nifti.is_nifti(path):
        raise InputError(
            f"{path}: unsupported file type; expected .nii/.nii.gz, .h5 or an LGG .tif"
        )
    m = _NNUNET.match(stem(path))
    if m:
        return _nnunet_ref(path.parent, m.group("id"), labels_dir=path.parent.parent / "labelsTr")
    header = nifti.read_header(path)
    if len(header.shape) == 4 and path.parent.name in _MSD_IMAGE_FOLDERS:
        return _msd_ref(path)
    # A 4D file elsewhere has no documented channel order: a loose file, refused when read.
    return CaseRef(stem(path), "nifti-file", path, patient=stem(path))


def _modality_folder_ref(folder: Path, typed: dict[Path, FileRole]) -> CaseRef:
    layout, scheme = naming_convention(typed)
    images: dict[str, Path] = {}
    label = brain_mask = None
    for p, role in typed.items():
        if role.kind == "unknown":
            raise InputError(
                f"{p}: unknown file in case folder {folder.name} (not a modality "
                f"{'/'.join(MODALITIES)}, a *_seg label or a brain mask); remove or rename it, "
                f"or describe the folder in {LAYOUT_CONFIG_NAME}"
            )
        if role.kind == "image":
            if role.modality in images:
                raise InputError(
                    f"{p}: second {role.modality} file (also {images[role.modality].name}); "
                    "keep one per modality"
                )
            images[role.modality] = p
        elif role.kind == "label":
            if label is not None:
                raise InputError(f"{p}: second label file (also {label.name}); keep one")
            label = p
        else:
            brain_mask = p
    case_id = common_id(typed)
    if not case_id or folder.name.lower() in _GENERIC_FOLDER_NAMES:
        # TCGA exports keep the modalities in <patient>/images/ under placeholder names.
        case_id = (
            folder.parent.name if folder.name.lower() in _GENERIC_FOLDER_NAMES else folder.name
        )
    if layout in FOUR_MODALITY_LAYOUTS:
        missing = [m for m in MODALITIES if m not in images]
        if missing:
            names = ", ".join(expected_name(layout, case_id, m) for m in missing)
            raise InputError(
                f"{folder}: missing modality {', '.join(missing)} (expected {names}); "
                "add the file(s), or pass the case with the modalities it has via a layout config"
            )
    ordered = {m: images[m] for m in MODALITIES if m in images}
    return CaseRef(case_id, layout, folder, ordered, label, scheme, brain_mask, patient=case_id)


def _msd_ref(path: Path) -> CaseRef:
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


def _nnunet_ref(images_dir: Path, case_id: str, *, labels_dir: Path) -> CaseRef:
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


def _dataset_refs(dataset: Path) -> list[CaseRef]:
    refs: list[CaseRef] = []
    for sub in ("imagesTr", "imagesTs"):
        folder = dataset / sub
        if folder.is_dir():
            files = sorted(
                p for p in folder.iterdir() if nifti.is_nifti(p) and not p.name.startswith(".")
            )
            ids = sorted({m.group("id") for p in files if (m := _NNUNET.match(stem(p)))})
            if ids:
                labels = dataset / "labelsTr"
                refs += [_nnunet_ref(folder, cid, labels_dir=labels) for cid in ids]
            else:
                refs += [_msd_ref(p) for p in files]
    return refs


def _config_matches(folder: Path, config: LayoutConfig) -> bool:
    return all(len(list(folder.glob(pattern))) == 1 for pattern in config.modalities.values())


def _glob_one(folder: Path, pattern: str, role: str, config: LayoutConfig) -> Path:
    """The one file ``pattern`` matches in ``folder``; it must resolve inside ``folder``."""
    where = config.source or "layout config"
    hits = sorted(folder.glob(pattern))
    if len(hits) != 1:
        raise InputError(
            f"{folder}: {where} pattern '{pattern}' for {role} matches {len(hits)} files; "
            "make it match exactly one"
        )
    real = hits[0].resolve()
    if not real.is_relative_to(folder.resolve()):
        raise InputError(
            f"{where}: pattern '{pattern}' for {role} matches {hits[0]}, which resolves to "
            f"{real} outside the case folder {folder}; copy the file into the case folder "
            "(links that leave it are refused)"
        )
    return hits[0]


def _config_ref(folder: Path, config: LayoutConfig) -> CaseRef:
    images = {m: _glob_one(folder, pat, m, config) for m, pat in config.modalities.items()}
    label = _glob_one(folder, config.label, "label", config) if config.label else None
    mask = _glob_one(folder, config.brain_mask, "brain_mask", config) if config.brain_mask else None
    return CaseRef(
        folder.name, "config", folder, images, label, config.label_scheme, mask, patient=folder.name
    )


# --------------------------------------------------------------------------- reading


def read_case(
    ref: CaseRef | str | Path, *, label_scheme: str | None = None, with_label: bool = True
) -> Case:
    """Load one case, check it and reorient it to canonical RAS+.

    Args:
        ref: A :class:`CaseRef` from :func:`find_cases`, or a path holding exactly one case.
        label_scheme: Override the layout's label scheme (``brats2020``, ``msd``...).
        with_label: Skip reading the segmentation even when present.

    Raises:
        FileNotFoundError / ValueError with a one-line message naming the file and the fix.
    """
    if not isinstance(ref, CaseRef):
        refs = find_cases(ref)
        if len(refs) != 1:
            raise InputError(f"{ref}: holds {len(refs)} cases; pass one case folder or file")
        ref = refs[0]
    reader = _READERS.get(ref.layout, _read_modality_folder)
    return reader(ref, label_scheme, with_label)


def _encode(
    raw: np.ndarray, path: Path, scheme_name: str | None, override: str | None
) -> tuple[np.ndarray, LabelScheme]:
    """Internal codes of a raw label map, in the override, layout or guessed scheme."""
    if override or scheme_name:
        scheme = get_scheme(override or scheme_name or "")
    else:
        values = np.unique(np.rint(raw) if raw.dtype.kind == "f" else raw)
        try:
            scheme = guess_scheme({int(v) for v in values})
        except ValueError as err:
            raise InputError(f"{path}: {err}") from None
    return scheme.encode(raw, source=str(path)), scheme


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
        raw = raw[..., None] if raw.ndim == 2 else raw
        grids.append((ref.label.name, raw.shape, affine))
        label, scheme = _encode(raw, ref.label, ref.scheme, override)
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
        label, scheme = _encode(raw, ref.label, ref.scheme, override)
    check_same_grid(grids)
    order = [ref.channels.index(m) for m in MODALITIES if m in ref.channels]
    image = np.ascontiguousarray(image[order])
    mods = tuple(ref.channels[i] for i in order)
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
    order = [tiff.LGG_CHANNELS.index(m) for m in MODALITIES if m in tiff.LGG_CHANNELS]
    image = np.ascontiguousarray(image[order])
    mods = tuple(tiff.LGG_CHANNELS[i] for i in order)
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
    case.meta["institution"] = ref.path.name.split("_")[1] if ref.path.name.count("_") >= 2 else ""
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
        label, scheme = _encode(raw, ref.path, None, override)
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
    if raw.dtype.kind == "f" and not np.array_equal(raw, np.rint(raw)):
        return False
    values = np.unique(raw)
    if values.size > 8 or float(values.min()) < 0:
        return False
    try:
        guess_scheme({int(v) for v in values})
    except ValueError:
        return False
    return True


_READERS = {
    "msd": _read_msd,
    "kaggle-h5": _read_h5,
    "lgg-tiff": _read_lgg,
    "nifti-file": _read_nifti_file,
}
