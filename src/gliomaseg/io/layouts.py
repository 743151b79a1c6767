"""Find the cases under a path and read each one into a canonical :class:`~gliomaseg.core.case.Case`.

Discovery (:func:`find_cases`) looks only at names and headers and returns
:class:`~gliomaseg.io.caseref.CaseRef` records; reading (:func:`read_case`, through
:mod:`gliomaseg.io.readers`) loads voxels, checks them and reorients to RAS+.
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

import logging
from collections.abc import Sequence
from pathlib import Path

from gliomaseg.core.case import MODALITIES, Case
from gliomaseg.core.errors import InputError, one_line
from gliomaseg.io import hdf5, nifti, tiff
from gliomaseg.io.caseref import LAYOUT_CONFIG_NAME, CaseRef, LayoutConfig
from gliomaseg.io.naming import (
    FOUR_MODALITY_LAYOUTS,
    FileRole,
    classify,
    common_id,
    expected_name,
    naming_convention,
    stem,
)
from gliomaseg.io.nnunet import MSD_IMAGE_FOLDERS, NNUNET_NAME, dataset_refs, msd_ref, nnunet_ref
from gliomaseg.io.readers import read_ref

log = logging.getLogger(__name__)

_GENERIC_FOLDER_NAMES = frozenset({"images", "image", "imgs", "anat"})


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
        return dataset_refs(folder)
    if tiff.is_lgg_folder(folder):
        return [CaseRef(folder.name, "lgg-tiff", folder, scheme="lgg", patient=folder.name)]
    niftis = sorted(
        p for p in folder.iterdir() if p.is_file() and nifti.is_nifti(p) and p.name[0] != "."
    )
    nnunet_ids = sorted({m.group("id") for p in niftis if (m := NNUNET_NAME.match(stem(p)))})
    if nnunet_ids:
        labels_dir = folder.parent / "labelsTr"
        return [nnunet_ref(folder, cid, labels_dir=labels_dir) for cid in nnunet_ids]
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
    m = NNUNET_NAME.match(stem(path))
    if m:
        return nnunet_ref(path.parent, m.group("id"), labels_dir=path.parent.parent / "labelsTr")
    header = nifti.read_header(path)
    if len(header.shape) == 4 and path.parent.name in MSD_IMAGE_FOLDERS:
        return msd_ref(path)
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
    return read_ref(ref, label_scheme, with_label)
