"""``gliomaseg explain``: features, plain-language summaries and a 3D surface of a segmentation.

Inputs (:func:`explain_inputs`):

* a labelled case in any layout :func:`~gliomaseg.io.layouts.find_cases` reads (its label is
  explained; its images give the brain for the brain fraction, midline and position);
* a folder of cases: each is explained on its own, and one bad case does not stop the others;
* a segmentation NIfTI such as ``<case>_seg.nii.gz`` from ``gliomaseg segment`` (or a folder of
  them). Its label scheme is, in order: ``label_scheme=``, the ``label_scheme`` recorded in a
  ``<case>_summary.json`` beside it, or a guess from its values. The images come from
  ``image=`` (a case, or a folder of cases matched by id), else from the ``inputs`` recorded in
  that summary; without images the field of view stands in for the brain (noted).

Outputs for case ``<id>`` in ``OUT_DIR`` (all written atomically):

==============================  ==============================================================
``<id>_features.json`` / .csv   :func:`~gliomaseg.explain.features.case_features` + the
                                :data:`~gliomaseg.explain.features.FEATURE_DOCS` dictionary
``<id>_slice_features.csv``     :func:`~gliomaseg.explain.features.slice_features` of every
                                axial slice (axis 2 of the canonical RAS+ arrays)
``<id>_explanation.json``       the case summary (:func:`~gliomaseg.explain.summary.
                                summarise_case`) and one summary per tumour slice, each with
                                chosen sentences, scores, statements, categories and agreement
``<id>_mesh.stl`` / ``.png``    whole-tumour surface at the true voxel size, in scanner RAS+ mm
                                (``SPACE=RAS`` header: overlays the image in 3D Slicer), and
                                three views; skipped, with a note, for an empty mask or a
                                single slice
==============================  ==============================================================

A single 2D slice (Z = 1: an HDF5 slice, a 2D NIfTI) is described as a slice (areas in mm²,
slice size bands); a "volume" of one slice would put it in the wrong size band. Every summary
passes :func:`~gliomaseg.explain.summary.check_summary` (the safety rules) before any file is
written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg import __version__
from gliomaseg.core.case import Case
from gliomaseg.core.errors import failure_message
from gliomaseg.core.labels import get_scheme
from gliomaseg.explain.describe import Description, describe_case, measure_case
from gliomaseg.explain.embedder import Embedder
from gliomaseg.explain.features import features_csv, write_features
from gliomaseg.explain.inputs import find_jobs, load_segmentation
from gliomaseg.explain.mesh import reconstruct_case
from gliomaseg.explain.mesh_files import render_views, write_mesh
from gliomaseg.explain.sentences import SentenceLibrary
from gliomaseg.io.atomic import write_json_atomic, write_text_atomic
from gliomaseg.io.outdir import OutputFolder, check_location
from gliomaseg.io.outputs import ExplainOutputs, explain_outputs

log = logging.getLogger(__name__)

#: Keys of a slice summary kept in ``<id>_explanation.json`` (features are in the CSV).
_SLICE_KEYS: tuple[str, ...] = (
    "empty",
    "size_band",
    "text",
    "sentences",
    "statements",
    "categories",
    "agreement",
    "agreement_rate",
)


def explain_case(
    case: Case,
    out_dir: str | Path,
    *,
    library: SentenceLibrary | None = None,
    embedder: Embedder | None = None,
    mesh: bool = True,
) -> dict[str, Any]:
    """Describe a labelled case and write its explanation files into ``out_dir``.

    Args:
        case: Canonical case with a label map (and, ideally, its images).
        out_dir: Output folder (created when missing).
        library: Sentence library (default: the shipped one).
        embedder: Sentence embedder (default: the packaged all-MiniLM-L6-v2).
        mesh: Also write ``<id>_mesh.stl`` and ``<id>_mesh.png``.

    Returns:
        The content of ``<id>_explanation.json`` (its ``files`` lists what was written).

    Raises:
        ValueError: no label map.
    """
    out = Path(out_dir)
    desc = describe_case(case, library=library, embedder=embedder)
    names = explain_outputs(case.case_id, out)
    # Written afresh on every run, but never over a file gliomaseg did not write.
    OutputFolder(out, overwrite=True).claim(
        names.features_json,
        names.features_csv,
        names.slice_features,
        names.mesh_stl,
        names.mesh_png,
        names.explanation,
    )
    json_path, csv_path = write_features(desc.features, out, stem=names.features_json.stem)
    files = {"features_json": json_path, "features_csv": csv_path}
    files["slice_features_csv"] = names.slice_features
    write_text_atomic(files["slice_features_csv"], features_csv(desc.slice_features))
    mesh_stats, mesh_files = _write_mesh(case, names, desc, enabled=mesh)
    files.update(mesh_files)
    files["explanation_json"] = names.explanation
    explanation = _explanation(case, desc, mesh_stats, files)
    write_json_atomic(files["explanation_json"], explanation)
    return explanation


def _write_mesh(
    case: Case, names: ExplainOutputs, desc: Description, *, enabled: bool
) -> tuple[dict[str, Any] | None, dict[str, Path]]:
    if not enabled:
        return None, {}
    if desc.features["empty"]:
        desc.notes.append("mesh skipped: the mask is empty")
        return None, {}
    if desc.scope == "slice":
        desc.notes.append("mesh skipped: a single slice has no 3D shape")
        return None, {}
    surface = reconstruct_case(case)
    stl = write_mesh(surface, names.mesh_stl)
    png = render_views(surface, names.mesh_png)
    return surface.stats(), {"mesh_stl": stl, "mesh_png": png}


def _explanation(
    case: Case, desc: Description, mesh_stats: dict[str, Any] | None, files: dict[str, Path]
) -> dict[str, Any]:
    slices = [
        {"slice_index": row["slice_index"], **{k: s[k] for k in _SLICE_KEYS}}
        for row, s in zip(
            (r for r in desc.slice_features if not r["empty"]), desc.slice_summaries, strict=True
        )
    ]
    flags = [item["agreement"] for s in desc.slice_summaries for item in s["sentences"]]
    return {
        "case_id": desc.case_id,
        "gliomaseg_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": dict(case.source),
        "layout": case.layout,
        "label_scheme": case.scheme.name if case.scheme is not None else None,
        "spacing_mm": list(case.spacing),
        "spacing_known": case.spacing_known,
        "scope": desc.scope,
        "summary": desc.summary,
        "slices": slices,
        "slice_agreement_rate": float(np.mean(flags)) if flags else None,
        "mesh": mesh_stats,
        "notes": desc.notes,
        "files": {k: str(v) for k, v in files.items()},
    }


@dataclass
class ExplainResult:
    """Outcome of :func:`explain_inputs`.

    Attributes:
        explanations: Case id -> explanation (as written), in processing order.
        failures: (input path, one-line reason) for each case that could not be explained.
    """

    explanations: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)


def explain_inputs(
    path: str | Path,
    out_dir: str | Path,
    *,
    image: str | Path | None = None,
    label_scheme: str | None = None,
    library: SentenceLibrary | None = None,
    embedder: Embedder | None = None,
    mesh: bool = True,
    on_case: Callable[[dict[str, Any]], None] | None = None,
) -> ExplainResult:
    """Explain a case, a folder of cases, or segmentation file(s) (see the module docstring).

    Args:
        path: Case folder or file, folder of cases, or ``<case>_seg.nii.gz`` file(s).
        out_dir: Output folder.
        image: Images for segmentation files: a case, or a folder of cases matched by id.
        label_scheme: Label scheme of the labels (default: the layout's, the one recorded by
            ``segment``, or a guess from the values).
        library: Sentence library (default: the shipped one).
        embedder: Sentence embedder (default: the packaged all-MiniLM-L6-v2).
        mesh: Write the surface files.
        on_case: Called with each explanation as soon as it is written.

    Returns:
        The explanations and the per-case failures; one bad case never stops the others.

    Raises:
        FileNotFoundError / ValueError: ``path`` holds no case at all, or ``label_scheme`` is
            unknown.
    """
    if label_scheme:
        get_scheme(label_scheme)
    check_location(out_dir, data_paths=[path, *([image] if image else [])])
    jobs, failures = find_jobs(Path(path), image=image, label_scheme=label_scheme)
    result = ExplainResult(failures=failures)
    for job in jobs:
        try:
            explanation = explain_case(
                job.load(), out_dir, library=library, embedder=embedder, mesh=mesh
            )
        except Exception as err:  # the per-case boundary: one bad case never stops a batch
            log.debug("%s failed", job.path, exc_info=True)
            result.failures.append((str(job.path), failure_message(err)))
            continue
        result.explanations[job.case_id] = explanation
        if on_case is not None:
            on_case(explanation)
    return result


__all__ = [
    "Description",
    "ExplainResult",
    "describe_case",
    "explain_case",
    "explain_inputs",
    "load_segmentation",
    "measure_case",
]
