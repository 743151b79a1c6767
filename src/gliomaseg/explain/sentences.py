"""The curated sentence library summaries are chosen from, and its wording rules.

The file is ``gliomaseg/resources/sentences.json`` (user-editable; see :func:`load_library`).
Every sentence carries category tags (:data:`~gliomaseg.explain.categories.CATEGORIES`); a
sentence may say "no tumour" only when tagged ``presence:none``, and may use size words
(:data:`SIZE_WORDS`) only of the band it is tagged with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gliomaseg.explain.categories import CATEGORIES, SCOPES

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


__all__ = [
    "NO_TUMOUR_PATTERN",
    "SIZE_WORDS",
    "Sentence",
    "SentenceLibrary",
    "default_library_path",
    "load_library",
    "says_no_tumour",
    "size_words_in",
]
