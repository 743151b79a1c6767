"""What ``gliomaseg explain`` reads: cases, folders of cases, and segmentation files.

:func:`find_jobs` turns an input path into one job per case (a job loads its case when run,
so one bad case fails alone). A segmentation NIfTI (:func:`load_segmentation`) gets its label
scheme and images from the ``<case>_summary.json`` that ``segment`` wrote beside it, unless
they are given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.core.case import Case
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.layouts import discover, find_cases, read_case
from gliomaseg.io.naming import stem
from gliomaseg.io.outputs import NON_MASK_STEM_SUFFIXES, segment_outputs, strip_seg_suffix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One case to explain: its id, the input it comes from, and how to load it."""

    case_id: str
    path: Path
    load: Callable[[], Case]


def find_jobs(
    path: Path, *, image: str | Path | None, label_scheme: str | None
) -> tuple[list[Job], list[tuple[str, str]]]:
    """One job per case under ``path`` and (path, reason) for what cannot be explained."""
    refs, failures = _discover(path)
    images = _ImageIndex(Path(image)) if image is not None else None
    jobs: list[Job] = []
    seen: dict[str, Path] = {}
    for ref in refs:
        if stem(ref.path).endswith(NON_MASK_STEM_SUFFIXES):  # e.g. <case>_probs
            continue
        if ref.layout == "nifti-file":
            job = _seg_job(ref, images=images, label_scheme=label_scheme)
        else:
            job = _case_job(ref, label_scheme)
        if job.case_id in seen:  # its files would overwrite the first one's
            failures.append(
                (
                    str(ref.path),
                    f"{ref.path}: case id '{job.case_id}' also at {seen[job.case_id]}; explain "
                    "them into separate output folders",
                )
            )
            continue
        seen[job.case_id] = ref.path
        jobs.append(job)
    if not jobs and not failures:
        raise ValueError(f"{path}: no case or segmentation to explain")
    return jobs, failures


def _discover(path: Path) -> tuple[list[CaseRef], list[tuple[str, str]]]:
    """Cases under ``path``; when one entry breaks discovery, the others are still found."""
    refs, bad = discover(path)
    return refs, [(str(p), msg) for p, msg in bad]


def _case_job(ref: CaseRef, label_scheme: str | None) -> Job:
    return Job(ref.case_id, ref.path, lambda: read_case(ref, label_scheme=label_scheme))


def _seg_job(ref: CaseRef, *, images: _ImageIndex | None, label_scheme: str | None) -> Job:
    case_id = strip_seg_suffix(ref.case_id)
    return Job(
        case_id,
        ref.path,
        lambda: load_segmentation(
            ref.path, case_id=case_id, images=images, label_scheme=label_scheme
        ),
    )


class _ImageIndex:
    """The cases under ``--image``, found once and matched to segmentations by id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.refs = find_cases(root)

    def match(self, case_id: str) -> CaseRef:
        if len(self.refs) == 1:
            return self.refs[0]
        for ref in self.refs:
            if ref.case_id == case_id:
                return ref
        raise ValueError(
            f"{self.root}: no case '{case_id}' among the {len(self.refs)} cases under --image; "
            "pass the case folder itself"
        )


def load_segmentation(
    seg: str | Path,
    *,
    case_id: str | None = None,
    images: str | Path | _ImageIndex | None = None,
    label_scheme: str | None = None,
) -> Case:
    """A segmentation NIfTI as a canonical case, with its images when they can be found.

    Args:
        seg: Label-map NIfTI (``<case>_seg.nii.gz``).
        case_id: Case id (default: the file name without ``_seg``).
        images: The images' case (or a folder of cases matched by id); default: the
            ``inputs`` recorded in ``<case>_summary.json`` beside ``seg``, when present.
        label_scheme: Label scheme of ``seg``; default: the one recorded in that summary,
            else a guess from the values.

    Returns:
        A case whose label is ``seg`` and whose image, brain mask and spacing flags come from
        the images' case (label only when none was found).

    Raises:
        ValueError: ``seg`` is an image rather than labels, its values fit no scheme, or its
            grid differs from the images'.
    """
    path = Path(seg)
    cid = case_id or strip_seg_suffix(stem(path))
    record = _segment_summary(path, cid)
    scheme = label_scheme or record.get("label_scheme")
    label_case = read_case(path, label_scheme=scheme)
    if label_case.label is None:
        raise ValueError(
            f"{path}: holds image intensities, not labels; pass a segmentation, or a "
            "--label-scheme if it is one"
        )
    label_case = replace(label_case, case_id=cid)
    if record.get("spacing_known") is False:
        label_case.spacing_known = False
    if isinstance(images, str | Path):
        images = _ImageIndex(Path(images))
    ref = images.match(cid) if images is not None else _recorded_images(path, record)
    if ref is None:
        return label_case
    return _with_images(label_case, read_case(ref, with_label=False), path)


def _segment_summary(seg: Path, case_id: str) -> dict[str, Any]:
    path = segment_outputs(case_id, seg.parent).summary
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable segment summary (%s); ignored", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def _recorded_images(seg: Path, record: Mapping[str, Any]) -> CaseRef | None:
    """The case ``segment`` read, from the ``inputs`` of its summary (None if gone)."""
    inputs = {k: v for k, v in (record.get("inputs") or {}).items() if k != "label"}
    if not inputs:
        return None
    paths = [_resolve(str(v), seg.parent) for v in inputs.values()]
    if not all(p.exists() for p in paths):
        log.warning("%s: the images recorded by segment are gone; explaining labels only", seg)
        return None
    target = paths[0] if len(paths) == 1 else _common_parent(paths)
    refs = find_cases(target)
    match = [r for r in refs if r.case_id == record.get("case_id")]
    return match[0] if match else refs[0] if len(refs) == 1 else None


def _resolve(text: str, base: Path) -> Path:
    path = Path(text)
    return path if path.is_absolute() or path.exists() else base / path


def _common_parent(paths: Sequence[Path]) -> Path:
    parents = [p.resolve().parent for p in paths]
    common = parents[0]
    while not all(p == common or common in p.parents for p in parents):
        common = common.parent
    return common


def _with_images(label_case: Case, image_case: Case, seg: Path) -> Case:
    assert label_case.label is not None  # checked by the caller
    same_shape = image_case.shape == label_case.label.shape
    if not same_shape or not np.allclose(image_case.affine, label_case.affine, atol=1e-3):
        raise ValueError(
            f"{seg}: grid {label_case.label.shape} does not match the images of "
            f"{image_case.case_id} {image_case.shape} (or their affines differ); pass the "
            "images the segmentation was made from with --image"
        )
    return replace(
        image_case,
        case_id=label_case.case_id,
        label=label_case.label,
        scheme=label_case.scheme,
        source={**image_case.source, "label": str(seg)},
        spacing_known=image_case.spacing_known and label_case.spacing_known,
        orientation_known=image_case.orientation_known and label_case.orientation_known,
    )


__all__ = ["Job", "find_jobs", "load_segmentation"]
