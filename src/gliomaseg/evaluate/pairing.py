"""Match prediction files to ground-truth cases by case id (the first step of ``evaluate``).

A prediction is a NIfTI file directly inside the prediction folder named
``<case_id>_seg.nii.gz`` (what ``gliomaseg segment`` writes), ``<case_id>-seg.nii.gz`` or
``<case_id>.nii.gz`` for a ground-truth case id; other files there (``<case_id>_probs``) are
ignored. The ground truth is anything :func:`~gliomaseg.io.layouts.find_cases` understands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gliomaseg.io import nifti
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.layouts import discover
from gliomaseg.io.naming import stem
from gliomaseg.io.outputs import strip_seg_suffix

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CasePair:
    """One prediction file matched to its ground-truth case.

    Attributes:
        case_id: Case id (ground-truth id, without a ``_seg`` suffix).
        pred: Prediction NIfTI file.
        ref: The ground-truth case as found by :func:`~gliomaseg.io.layouts.find_cases`.
    """

    case_id: str
    pred: Path
    ref: CaseRef


def _prediction_files(pred_dir: Path) -> list[Path]:
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found; check --pred")
    files = sorted(
        p for p in pred_dir.iterdir() if p.is_file() and nifti.is_nifti(p) and p.name[0] != "."
    )
    if not files:
        raise ValueError(
            f"{pred_dir}: no NIfTI predictions; expected <case_id>_seg.nii.gz files directly "
            "in the folder (as 'gliomaseg segment' writes them)"
        )
    return files


def _discover(gt_dir: Path) -> tuple[list[CaseRef], dict[str, str]]:
    """Ground-truth cases, and the entries that could not be discovered (id -> reason)."""
    refs, bad = discover(gt_dir)
    return refs, {strip_seg_suffix(stem(p)): msg for p, msg in bad}


def _reference_cases(gt_dir: Path) -> tuple[dict[str, CaseRef], dict[str, str]]:
    found, errors = _discover(gt_dir)
    refs: dict[str, CaseRef] = {}
    for ref in found:
        key = strip_seg_suffix(ref.case_id)
        if key in refs:
            raise ValueError(
                f"{ref.path}: ground-truth case id '{key}' also found at {refs[key].path}; "
                "keep one copy of each case under --gt"
            )
        refs[key] = ref
    return refs, errors


@dataclass
class Pairing:
    """Prediction files matched to ground-truth cases.

    Attributes:
        pairs: Matched cases, in case-id order.
        missing_predictions: Ground-truth case ids without a prediction file.
        missing_references: Prediction case ids without a ground-truth case.
        errors: Ground-truth entries that could not be discovered (id -> one-line reason).
    """

    pairs: list[CasePair]
    missing_predictions: list[str]
    missing_references: list[str]
    errors: dict[str, str]


def pair_cases(pred_dir: str | Path, gt_dir: str | Path) -> Pairing:
    """Match prediction files to ground-truth cases by case id.

    A prediction is a NIfTI directly in ``pred_dir`` named ``<id>_seg`` / ``<id>-seg`` or
    exactly ``<id>`` for a ground-truth case id; other files (``<id>_probs.nii.gz``...) are
    ignored. A ``_seg`` file whose id has no ground truth is a missing reference.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: no predictions or no ground truth found, or one case id twice.
    """
    refs, errors = _reference_cases(Path(gt_dir))
    preds: dict[str, Path] = {}
    ignored = []
    for path in _prediction_files(Path(pred_dir)):
        name = stem(path)
        key = name if name in refs else strip_seg_suffix(name)
        if key == name and name not in refs:
            ignored.append(path.name)  # e.g. <case>_probs.nii.gz written beside the labels
            continue
        if key in preds:
            raise ValueError(
                f"{path}: prediction for case '{key}' also given by {preds[key].name}; "
                "keep one prediction file per case"
            )
        preds[key] = path
    if ignored:
        logger.debug("ignored %d file(s) that are not predictions: %s", len(ignored), ignored)
    return Pairing(
        pairs=[CasePair(k, preds[k], refs[k]) for k in sorted(refs) if k in preds],
        missing_predictions=sorted(k for k in refs if k not in preds),
        missing_references=sorted(k for k in preds if k not in refs and k not in errors),
        errors=errors,
    )
