"""Retrieval-based summaries: safety rules, library checks, agreement, and the real model."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.explain.categories import CATEGORIES, categorise, size_band
from gliomaseg.explain.features import case_features, slice_features
from gliomaseg.explain.sentences import (
    SIZE_WORDS,
    default_library_path,
    load_library,
    says_no_tumour,
    size_words_in,
)
from gliomaseg.explain.summary import (
    agreement_report,
    check_summary,
    summarise_case,
    summarise_slice,
)
from gliomaseg.synthetic.phantoms import make_case


class HashEmbedder:
    """Bag of words hashed into 256 dimensions: fast, deterministic, shares-words similarity."""

    name = "hash-bow"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
        return out


class NoTumourFirstEmbedder:
    """Adversarial: every query is closest to the "no tumour" sentences."""

    name = "adversarial"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), 2), [1.0, 0.0], dtype=np.float32)
        for row, text in enumerate(texts):
            if says_no_tumour(text) and "voxels" not in text:
                out[row] = [0.0, 1.0]
            elif "voxels" in text or "(" in text:  # statements (queries)
                out[row] = [0.1, 1.0]
        return out


@pytest.fixture
def fake() -> HashEmbedder:
    return HashEmbedder()


def _slice_with_pixels(n: int) -> dict:
    """One axial slice at 1 mm pixels holding exactly ``n`` tumour pixels."""
    plane = np.zeros((240, 240, 1), dtype=np.uint8)
    flat = plane.reshape(-1)
    start = 120 * 240 + 60
    for i in range(n):
        flat[start + (i // 50) * 240 + i % 50] = 2
    return slice_features(plane, affine=np.eye(4))[0]


def test_shipped_library_is_valid_and_complete() -> None:
    library = load_library()
    assert 40 <= len(library.sentences) <= 80
    tags = {t for s in library.sentences for t in s.categories}
    assert tags == {t for values in CATEGORIES.values() for t in values}
    raw = json.loads(default_library_path().read_text())
    assert all({"id", "text", "category"} <= set(s) for s in raw["sentences"])


def test_regression_201_pixel_slice_is_not_no_tumour(fake: HashEmbedder) -> None:
    """The original tool summarised a slice with 201 tumour pixels as "No tumor in this slice"."""
    feats = _slice_with_pixels(201)
    assert feats["n_voxels"] == 201 and not feats["empty"]
    summary = summarise_slice(feats, embedder=fake)
    assert summary["categories"]["presence"] == "presence:tumour"
    assert summary["size_band"] == "small"
    for item in summary["sentences"]:
        assert "presence:none" not in item["categories"]
        assert not says_no_tumour(item["text"])
    assert not says_no_tumour(summary["text"])
    assert "201 voxels" in " ".join(summary["statements"])


def test_empty_slice_says_no_tumour_only(fake: HashEmbedder) -> None:
    summary = summarise_slice(_slice_with_pixels(0), embedder=fake)
    assert summary["empty"]
    assert [s["category"] for s in summary["sentences"]] == ["presence:none"]
    assert says_no_tumour(summary["text"])


def test_restriction_beats_a_misleading_embedder() -> None:
    """Even when retrieval prefers "no tumour", a non-empty mask never gets that sentence."""
    summary = summarise_slice(_slice_with_pixels(201), embedder=NoTumourFirstEmbedder())
    assert not says_no_tumour(summary["text"])
    assert summary["sentences"][0]["top1_categories"] == ["presence:none"]
    assert summary["sentences"][0]["agreement"] is False
    assert summary["agreement"] is False
    report = agreement_report([_slice_with_pixels(201)], embedder=NoTumourFirstEmbedder())
    assert report["rate"] < 1.0 and report["disagreements"]


def _random_case_features(rng: np.random.Generator, base: dict) -> dict:
    feats = dict(base)
    wt = float(np.exp(rng.uniform(np.log(0.05), np.log(300))))
    ncr, ed = rng.dirichlet([1, 1, 1])[:2]
    feats.update(
        volume_ml_WT=wt,
        proportion_NCR=float(ncr),
        proportion_ED=float(ed),
        proportion_ET=float(1 - ncr - ed),
        core_fraction_NCR=float(ncr / (1 - ed)),
        core_fraction_ET=float((1 - ncr - ed) / (1 - ed)),
        irregularity=float(rng.uniform(0, 0.6)),
        n_components=int(rng.integers(1, 5)),
        n_components_major=int(rng.integers(1, 3)),
        et_rim_fraction=float(rng.uniform()),
        laterality=str(rng.choice(["left", "right", "bilateral", "midline"])),
        extent_mm=[float(v) for v in rng.uniform(5, 100, 3)],
        brain_fraction=float(rng.uniform(0, 0.3)),
    )
    feats["n_components"] = max(feats["n_components"], feats["n_components_major"])
    return feats


def test_safety_rules_hold_over_random_features(fake: HashEmbedder) -> None:
    case = make_case(rng=np.random.default_rng(3), template="phantom")
    base = case_features(case.label, affine=case.affine, image=case.stack())
    rng = np.random.default_rng(0)
    library = load_library()
    for _ in range(60):
        feats = _random_case_features(rng, base)
        summary = summarise_case(feats, embedder=fake, library=library)
        check_summary(summary)
        band = size_band(feats)
        low, high = 10.0, 50.0
        wt = feats["volume_ml_WT"]
        assert band == ("small" if wt < low else "large" if wt > high else "medium")
        assert summary["categories"] == categorise(feats)
        for item in summary["sentences"]:
            assert item["category"] in item["categories"]
            assert item["score"] >= -1.0 - 1e-9
        words = size_words_in(summary["text"] + " ".join(summary["statements"]))
        assert words <= {band}
        assert not says_no_tumour(summary["text"])


def test_size_bands_and_categories_for_slices(fake: HashEmbedder) -> None:
    assert size_band(_slice_with_pixels(450)) == "small"
    assert size_band(_slice_with_pixels(900)) == "medium"
    big = _slice_with_pixels(2000)
    assert size_band(big) == "large"
    summary = summarise_slice(big, embedder=fake)
    assert summary["categories"]["size"] == "size:large"
    assert any(s["category"] == "size:large" for s in summary["sentences"])


def test_kind_mismatch_and_missing_keys(fake: HashEmbedder) -> None:
    with pytest.raises(ValueError, match="summarise_slice"):
        summarise_case(_slice_with_pixels(10), embedder=fake)
    with pytest.raises(ValueError, match="case_features or slice_features"):
        summarise_case({"volume_ml_WT": 3.0}, embedder=fake)


def _write_library(path: Path, sentences: list[dict]) -> Path:
    shipped = json.loads(default_library_path().read_text())["sentences"]
    path.write_text(json.dumps({"version": 1, "sentences": shipped + sentences}))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"id": "x", "text": "A small rim of enhancement.", "category": ["enhancement:rim"]},
            "size",
        ),
        ({"id": "x", "text": "There is no tumour here.", "category": ["size:small"]}, "no tumour"),
        ({"id": "x", "text": "Fine.", "category": ["size:tiny"]}, "unknown category"),
        ({"id": "left_1", "text": "Left.", "category": ["laterality:left"]}, "repeat"),
        ({"id": "x", "text": "Huge.", "category": ["size:small"]}, "size words"),
    ],
)
def test_library_checks_name_file_and_fix(tmp_path: Path, extra: dict, message: str) -> None:
    path = _write_library(tmp_path / "lib.json", [extra])
    with pytest.raises(ValueError, match=message) as err:
        load_library(path)
    assert str(path) in str(err.value)


def test_library_missing_category_is_reported(tmp_path: Path) -> None:
    shipped = json.loads(default_library_path().read_text())["sentences"]
    kept = [s for s in shipped if "focality:diffuse" not in s["category"]]
    path = tmp_path / "lib.json"
    path.write_text(json.dumps({"sentences": kept}))
    with pytest.raises(ValueError, match="focality:diffuse"):
        load_library(path)
    with pytest.raises(FileNotFoundError):
        load_library(tmp_path / "absent.json")


def test_size_words_table_is_disjoint() -> None:
    seen = [w for words in SIZE_WORDS.values() for w in words]
    assert len(seen) == len(set(seen))
    assert size_words_in("Extensive edema surrounds it.") == set()
    assert size_words_in("A medium-sized lesion.") == {"medium"}


def test_agreement_report_counts(fake: HashEmbedder) -> None:
    case = make_case(rng=np.random.default_rng(5), template="phantom")
    feats = case_features(case.label, affine=case.affine, image=case.stack())
    rows = slice_features(case.label, affine=case.affine, image=case.stack())
    report = agreement_report(
        [feats, *rows[:4], *[r for r in rows if r["n_voxels"]][:3]], embedder=fake
    )
    assert report["n_summaries"] == 8
    assert report["n_aspects"] == sum(e["n"] for e in report["per_aspect"].values())
    agree = sum(e["agree"] for e in report["per_aspect"].values())
    assert report["n_agree"] == agree
    assert report["rate"] == pytest.approx(agree / report["n_aspects"])
    assert report["per_aspect"]["presence"]["n"] == 8
    assert agreement_report([], embedder=fake)["rate"] is None


@pytest.mark.slow
def test_real_minilm_model_summaries() -> None:
    """The packaged all-MiniLM-L6-v2 (no download) gives 384-d unit vectors and safe text."""
    from gliomaseg.explain.embedder import default_embedder

    embedder = default_embedder()
    texts = ["The tumour is large.", "This is a large lesion.", "The train leaves at noon."]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2

    summary = summarise_slice(_slice_with_pixels(201))
    assert not says_no_tumour(summary["text"])
    assert summary["embedder"].endswith("all-MiniLM-L6-v2")

    case = make_case(rng=np.random.default_rng(2), template="phantom")
    feats = case_features(case.label, affine=case.affine, image=case.stack())
    rows = [r for r in slice_features(case.label, affine=case.affine) if r["n_voxels"]]
    report = agreement_report([feats, *rows, _slice_with_pixels(0)])
    assert report["rate"] >= 0.8, report["disagreements"]
    assert report["per_aspect"]["presence"]["rate"] == 1.0
