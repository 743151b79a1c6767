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

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, failure_line, failure_message, one_line
from gliomaseg.io.atomic import write_json_atomic, write_text_atomic
from gliomaseg.io.outdir import OutputFolder, check_location

if TYPE_CHECKING:
    from gliomaseg.core.case import Case
    from gliomaseg.explain.summary import Embedder, SentenceLibrary
    from gliomaseg.io.caseref import CaseRef

log = logging.getLogger(__name__)

#: Files ``gliomaseg segment`` writes beside segmentations that are not cases themselves.
_SEGMENT_EXTRAS: tuple[str, ...] = ("_probs.nii.gz", "_probs.nii")
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


# --------------------------------------------------------------------------- description


@dataclass
class Description:
    """Features and summaries of one case, before anything is written.

    Attributes:
        case_id: Case identifier.
        scope: ``"case"`` (3D) or ``"slice"`` (a single 2D slice).
        features: :func:`~gliomaseg.explain.features.case_features` of the label map.
        slice_features: One dict per axial slice (axis 2), every slice.
        summary: Summary of the whole input: ``summarise_case`` (3D) or ``summarise_slice``
            of the only slice (2D).
        slice_summaries: ``summarise_slice`` of each slice holding tumour, in slice order.
        notes: Caveats a reader needs (assumed spacing, no brain reference...).
    """

    case_id: str
    scope: str
    features: dict[str, Any]
    slice_features: list[dict[str, Any]]
    summary: dict[str, Any]
    slice_summaries: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def summaries(self) -> list[dict[str, Any]]:
        """The main summary followed by the slice summaries."""
        return [self.summary, *self.slice_summaries]


def describe_case(
    case: Case,
    *,
    library: SentenceLibrary | None = None,
    embedder: Embedder | None = None,
) -> Description:
    """Features and summaries of a labelled case (the feature + summary path of explain).

    Args:
        case: Canonical case with a label map; its image and brain mask (when present) are the
            brain reference.
        library: Sentence library (default: the one shipped with the package).
        embedder: Sentence embedder (default: the packaged all-MiniLM-L6-v2).

    Returns:
        The :class:`Description`. An empty mask gives "no tumour" summaries only and no slice
        summaries.

    Raises:
        ValueError: the case has no label map.
        RuntimeError: a summary would break a safety rule (a bug, never silenced).
    """
    from gliomaseg.explain.summary import (
        check_summary,
        load_library,
        summarise_case,
        summarise_slice,
    )

    if case.label is None:
        raise ValueError(
            f"{case.case_id}: no label map to explain; pass a labelled case or a segmentation "
            "(run 'gliomaseg segment' first)"
        )
    lib = library if library is not None else load_library()
    feats, rows = measure_case(case)
    scope = "slice" if case.label.shape[2] == 1 else "case"
    model = _CaseEmbedder(embedder)
    model.prefetch([r for r in rows if not r["empty"]])
    slices = [summarise_slice(r, embedder=model, library=lib) for r in rows if not r["empty"]]
    if scope == "case":
        summary = summarise_case(feats, embedder=model, library=lib)
    else:  # the only slice: its summary (an empty slice has none among ``slices``)
        summary = slices[0] if slices else summarise_slice(rows[0], embedder=model, library=lib)
    for item in [summary, *slices]:
        check_summary(item)
    return Description(
        case_id=case.case_id,
        scope=scope,
        features=feats,
        slice_features=rows,
        summary=summary,
        slice_summaries=slices,
        notes=_notes(case, feats, scope),
    )


def measure_case(case: Case, *, slices: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The features explain describes a labelled case from (its summaries' only input).

    Args:
        case: Canonical case with a label map; its brain mask, else its image's non-zero
            voxels, is the brain reference.
        slices: Also measure every axial slice (axis 2).

    Returns:
        (:func:`~gliomaseg.explain.features.case_features`, the
        :func:`~gliomaseg.explain.features.slice_features` of every slice, or ``[]``).

    Raises:
        ValueError: the case has no label map.
    """
    from gliomaseg.explain.features import case_features, slice_features

    if case.label is None:
        raise ValueError(f"{case.case_id}: no label map to measure; pass a labelled case")
    binary = bool(case.scheme is not None and case.scheme.binary)
    label, affine, brain, image = case.label, case.affine, case.brain_mask, case.image
    to_input = case.source_indices  # centroid_voxel in the input file's indices, as segment's
    common: dict[str, Any] = {
        "affine": affine,
        "brain_mask": brain,
        "image": image,
        "binary": binary,
        "to_input": to_input,
        "orientation_known": case.orientation_known,
    }
    feats = case_features(label, **common)
    rows = slice_features(label, **common) if slices else []
    return feats, rows


class _CaseEmbedder:
    """Embeds each distinct text of one case once, and all slice queries in one model call.

    ``MiniLMEmbedder`` clears its cache when it passes its size limit and then looks up texts
    that were cached before the clear (a ``KeyError``, seen after ~50 cases of a batch). A
    fresh one per case, asked only for texts this cache lacks, never hits that path; the
    model weights themselves are loaded once per process.
    """

    def __init__(self, embedder: Embedder | None) -> None:
        from gliomaseg.explain.summary import MiniLMEmbedder, default_embedder

        inner = embedder if embedder is not None else default_embedder()
        if isinstance(inner, MiniLMEmbedder):
            inner = MiniLMEmbedder(device=inner.device)
        self.inner = inner
        self._cache: dict[str, NDArray[np.float32]] = {}

    @property
    def name(self) -> str:
        """The wrapped embedder's name (recorded in each summary)."""
        return self.inner.name

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(N, D) float32 vectors of ``texts``."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = np.asarray(self.inner.embed(missing), dtype=np.float32)
            self._cache.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.asarray(self.inner.embed([]), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def prefetch(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Embed the retrieval queries of these slices in one call."""
        from gliomaseg.explain.summary import aspect_statements

        queries = [text for r in rows for text in aspect_statements(r).values()]
        if queries:
            self.embed(queries)


def _notes(case: Case, feats: Mapping[str, Any], scope: str) -> list[str]:
    notes = []
    if not case.spacing_known:
        notes.append(
            "the files carry no voxel size: 1 mm was assumed, so volumes, areas and the size "
            "band are in units of the assumed voxel size"
        )
    if feats["brain_reference"] == "field_of_view":
        notes.append(
            "no image or brain mask: the midline and position are measured against the field "
            "of view and the brain fraction is not given"
        )
    if not case.orientation_known:
        notes.append(
            "the input does not record its orientation: no side (laterality) and no position "
            "in the brain are given"
        )
    if scope == "slice":
        notes.append("a single 2D slice: described as a slice (areas in mm²), not as a volume")
    if feats["empty"]:
        notes.append("the mask is empty: no tumour to describe and no surface")
    return notes


# --------------------------------------------------------------------------- writing


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
    from gliomaseg.explain.features import features_csv, write_features

    out = Path(out_dir)
    desc = describe_case(case, library=library, embedder=embedder)
    cid = case.case_id
    # Written afresh on every run, but never over a file gliomaseg did not write.
    OutputFolder(out, overwrite=True).claim(
        *(
            out / f"{cid}_{suffix}"
            for suffix in (
                "features.json",
                "features.csv",
                "slice_features.csv",
                "mesh.stl",
                "mesh.png",
                "explanation.json",
            )
        )
    )
    json_path, csv_path = write_features(desc.features, out, stem=f"{cid}_features")
    files = {"features_json": json_path, "features_csv": csv_path}
    files["slice_features_csv"] = out / f"{cid}_slice_features.csv"
    write_text_atomic(files["slice_features_csv"], features_csv(desc.slice_features))
    mesh_stats, mesh_files = _write_mesh(case, out, desc, enabled=mesh)
    files.update(mesh_files)
    files["explanation_json"] = out / f"{cid}_explanation.json"
    explanation = _explanation(case, desc, mesh_stats, files)
    write_json_atomic(files["explanation_json"], explanation)
    return explanation


def _write_mesh(
    case: Case, out: Path, desc: Description, *, enabled: bool
) -> tuple[dict[str, Any] | None, dict[str, Path]]:
    from gliomaseg.explain.mesh import reconstruct_case, render_views, write_mesh

    if not enabled:
        return None, {}
    if desc.features["empty"]:
        desc.notes.append("mesh skipped: the mask is empty")
        return None, {}
    if desc.scope == "slice":
        desc.notes.append("mesh skipped: a single slice has no 3D shape")
        return None, {}
    surface = reconstruct_case(case)
    stl = write_mesh(surface, out / f"{case.case_id}_mesh.stl")
    png = render_views(surface, out / f"{case.case_id}_mesh.png")
    return surface.stats(), {"mesh_stl": stl, "mesh_png": png}


def _explanation(
    case: Case, desc: Description, mesh_stats: dict[str, Any] | None, files: dict[str, Path]
) -> dict[str, Any]:
    from gliomaseg import __version__

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


# --------------------------------------------------------------------------- inputs


@dataclass
class ExplainResult:
    """Outcome of :func:`explain_inputs`.

    Attributes:
        explanations: Case id -> explanation (as written), in processing order.
        failures: (input path, one-line reason) for each case that could not be explained.
    """

    explanations: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    case_id: str
    path: Path
    load: Callable[[], Case]


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
    from gliomaseg.core.labels import get_scheme

    if label_scheme:
        get_scheme(label_scheme)
    check_location(out_dir, data_paths=[path, *([image] if image else [])])
    jobs, failures = _jobs(Path(path), image=image, label_scheme=label_scheme)
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


def _jobs(
    path: Path, *, image: str | Path | None, label_scheme: str | None
) -> tuple[list[_Job], list[tuple[str, str]]]:
    refs, failures = _discover(path)
    images = _ImageIndex(Path(image)) if image is not None else None
    jobs: list[_Job] = []
    seen: dict[str, Path] = {}
    for ref in refs:
        if ref.path.name.endswith(_SEGMENT_EXTRAS):
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
    from gliomaseg.io.layouts import discover

    refs, bad = discover(path)
    return refs, [(str(p), msg) for p, msg in bad]


def _case_job(ref: CaseRef, label_scheme: str | None) -> _Job:
    from gliomaseg.io.layouts import read_case

    return _Job(ref.case_id, ref.path, lambda: read_case(ref, label_scheme=label_scheme))


def _seg_job(ref: CaseRef, *, images: _ImageIndex | None, label_scheme: str | None) -> _Job:
    from gliomaseg.io.outputs import strip_seg_suffix

    case_id = strip_seg_suffix(ref.case_id)
    return _Job(
        case_id,
        ref.path,
        lambda: load_segmentation(
            ref.path, case_id=case_id, images=images, label_scheme=label_scheme
        ),
    )


class _ImageIndex:
    """The cases under ``--image``, found once and matched to segmentations by id."""

    def __init__(self, root: Path) -> None:
        from gliomaseg.io.layouts import find_cases

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
    from gliomaseg.io.layouts import read_case
    from gliomaseg.io.naming import stem
    from gliomaseg.io.outputs import strip_seg_suffix

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
    path = seg.parent / f"{case_id}_summary.json"
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
    from gliomaseg.io.layouts import find_cases

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


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``gliomaseg explain`` flags to a (sub)parser."""
    parser.add_argument(
        "input",
        type=Path,
        metavar="CASE|SEG",
        help="labelled case, folder of cases, or segmentation NIfTI (<case>_seg.nii.gz)",
    )
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        metavar="CASE",
        help="images of a segmentation (a case, or a folder of cases matched by id); default: "
        "the inputs recorded in <case>_summary.json beside it",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="output folder"
    )
    parser.add_argument("--no-mesh", action="store_true", help="skip the STL surface and its PNG")
    parser.add_argument(
        "--label-scheme",
        default=None,
        help="label scheme of the labels (brats2020, brats2023, msd, brats2013, lgg, binary...)",
    )
    parser.add_argument(
        "--sentences",
        type=Path,
        default=None,
        metavar="FILE",
        help="sentence library JSON (default: the shipped one; copy and edit it)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``gliomaseg explain`` from parsed flags; 0 ok, 2 bad input or a case failed."""
    from gliomaseg.explain.summary import load_library

    try:
        library = load_library(args.sentences)
        result = explain_inputs(
            args.input,
            args.output,
            image=args.image,
            label_scheme=args.label_scheme,
            library=library,
            mesh=not args.no_mesh,
            on_case=print_case,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"gliomaseg: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path, msg in result.failures:
        print(failure_line(path, msg), file=sys.stderr)
    if result.failures:
        total = len(result.failures) + len(result.explanations)
        print(f"gliomaseg: {len(result.failures)} of {total} case(s) failed", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def print_case(explanation: Mapping[str, Any]) -> None:
    """Print the chosen sentences and notes of one explanation."""
    summary = explanation["summary"]
    print(f"{explanation['case_id']}:")
    for item in summary["sentences"]:
        print(f"  {item['text']}")
    for note in explanation["notes"]:
        print(f"  note: {note}")
    print(f"  -> {explanation['files']['explanation_json']}")


__all__ = [
    "Description",
    "ExplainResult",
    "add_arguments",
    "describe_case",
    "explain_case",
    "explain_inputs",
    "load_segmentation",
    "measure_case",
    "run",
]
