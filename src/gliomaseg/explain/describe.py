"""What ``gliomaseg explain`` says about a labelled case, before anything is written.

:func:`measure_case` gives the features (:mod:`~gliomaseg.explain.features`) and
:func:`describe_case` the summaries chosen from them (:mod:`~gliomaseg.explain.summary`), with
the caveats a reader needs, as a :class:`Description`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import Case
from gliomaseg.explain import embedder as embedders
from gliomaseg.explain.embedder import Embedder, MiniLMEmbedder
from gliomaseg.explain.features import case_features, slice_features
from gliomaseg.explain.sentences import SentenceLibrary, load_library
from gliomaseg.explain.summary import (
    aspect_statements,
    check_summary,
    summarise_case,
    summarise_slice,
)


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
        inner = embedder if embedder is not None else embedders.default_embedder()
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


__all__ = ["Description", "describe_case", "measure_case"]
