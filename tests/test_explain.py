"""``gliomaseg explain``: files, segmentation inputs, batches with a bad case, real cases."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gliomaseg.cli import explain as explain_cli
from gliomaseg.explain import embedder as embedder_module
from gliomaseg.explain import workflow as explain
from gliomaseg.explain.sentences import default_library_path
from gliomaseg.explain.summary import check_summary
from gliomaseg.io.atomic import write_json_atomic
from gliomaseg.io.layouts import read_case
from gliomaseg.io.segmentation import write_segmentation
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import make_case


class HashEmbedder:
    """Bag of words hashed into 256 dimensions: fast and deterministic (no model needed)."""

    name = "hash-bow"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
        return out


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every summary in this file uses the hash embedder unless a test asks for MiniLM."""
    monkeypatch.setattr(embedder_module, "default_embedder", HashEmbedder)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small phantom cases (BraTS 2020 layout; spacing 1 x 1 x 2 mm, x axis flipped)."""
    root = tmp_path_factory.mktemp("explain") / "raw"
    for i in range(2):
        synth = make_case(
            rng=np.random.default_rng(10 + i),
            case_id=f"Synth_{i:03d}",
            template="phantom",
            shape=(32, 32, 20),
            tumour_radius_mm=8.0,
        )
        write_layout(synth, root, layout="brats2020")
    return root


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gliomaseg explain")
    explain_cli.add_arguments(parser)
    return parser


def _run(argv: list[str]) -> int:
    return explain_cli.run(_parser().parse_args(argv))


def _load(out: Path, case_id: str) -> dict[str, Any]:
    return json.loads((out / f"{case_id}_explanation.json").read_text())


def test_case_folder_writes_every_file(raw: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run([str(raw / "Synth_000"), "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {".gliomaseg-manifest.json"} | {
        f"Synth_000_{n}"
        for n in (
            "features.json",
            "features.csv",
            "slice_features.csv",
            "explanation.json",
            "mesh.stl",
            "mesh.png",
        )
    }
    data = _load(out, "Synth_000")
    summary = data["summary"]
    check_summary(summary)
    assert data["scope"] == "case" and summary["kind"] == "case" and not summary["empty"]
    case = read_case(raw / "Synth_000")
    assert case.label is not None
    tumour_slices = [int(z) for z in np.flatnonzero(case.label.any(axis=(0, 1)))]
    assert [s["slice_index"] for s in data["slices"]] == tumour_slices
    for item in data["slices"]:
        check_summary(item)
        assert {"sentences", "statements", "categories", "agreement"} <= set(item)
        assert all({"score", "top1_id", "agreement"} <= set(s) for s in item["sentences"])
    features = json.loads((out / "Synth_000_features.json").read_text())
    assert features["features"]["volume_ml_WT"] == pytest.approx(
        case.voxel_volume_ml * np.count_nonzero(case.label)
    )
    assert set(features["docs"]) >= {"volume_ml_WT", "laterality", "solidity"}
    with (out / "Synth_000_slice_features.csv").open() as f:
        assert len(list(csv.DictReader(f))) == case.shape[2]
    assert data["mesh"]["n_faces"] > 0
    assert (out / "Synth_000_mesh.stl").stat().st_size == 84 + 50 * data["mesh"]["n_faces"]
    printed = capsys.readouterr().out
    assert all(s["text"] in printed for s in summary["sentences"])
    assert not list(out.glob(".gstmp-*"))  # no temporary files left behind


def test_segmentation_finds_its_images_through_the_segment_summary(
    raw: Path, tmp_path: Path
) -> None:
    case = read_case(raw / "Synth_001")
    assert case.label is not None
    seg_dir = tmp_path / "segment_out"
    seg = write_segmentation(case, case.label, seg_dir / "Synth_001_seg.nii.gz")
    record = {"case_id": "Synth_001", "inputs": case.source, "label_scheme": "brats2020"}
    write_json_atomic(seg_dir / "Synth_001_summary.json", record)
    direct = explain.describe_case(case, embedder=HashEmbedder())

    assert _run([str(seg), "-o", str(tmp_path / "a"), "--no-mesh"]) == 0
    data = _load(tmp_path / "a", "Synth_001")
    feats = data["summary"]["features"]
    assert feats["brain_reference"] == "image"
    for key in ("volume_ml_WT", "volume_ml_ET", "laterality", "brain_fraction", "centroid_mm"):
        assert feats[key] == pytest.approx(direct.features[key]), key
    assert data["summary"]["categories"] == direct.summary["categories"]
    assert data["inputs"]["label"] == str(seg)

    # The same segmentation alone: the field of view stands in for the brain, with a note.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(seg, alone / seg.name)
    assert _run([str(alone / seg.name), "-o", str(tmp_path / "b"), "--no-mesh"]) == 0
    data = _load(tmp_path / "b", "Synth_001")
    assert data["summary"]["features"]["brain_reference"] == "field_of_view"
    assert any("field of view" in n for n in data["notes"])

    # ... and with --image pointing at the folder of cases (matched by id).
    argv = [str(alone / seg.name), "--image", str(raw), "-o", str(tmp_path / "c"), "--no-mesh"]
    assert _run(argv) == 0
    assert _load(tmp_path / "c", "Synth_001")["summary"]["features"]["brain_reference"] == "image"


def test_batch_reports_one_bad_case_and_goes_on(raw: Path, tmp_path: Path, capsys) -> None:
    batch = tmp_path / "batch"
    shutil.copytree(raw, batch)
    bad = batch / "Synth_001" / "Synth_001_seg.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated label file
    assert _run([str(batch), "-o", str(tmp_path / "out"), "--no-mesh"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("gliomaseg: error: ") and "Synth_001" in err[0]
    assert err[1] == "gliomaseg: 1 of 2 case(s) failed"
    assert (tmp_path / "out" / "Synth_000_explanation.json").exists()
    assert not (tmp_path / "out" / "Synth_001_explanation.json").exists()


def test_empty_mask_says_no_tumour_and_skips_the_mesh(raw: Path, tmp_path: Path) -> None:
    case = read_case(raw / "Synth_000")
    assert case.label is not None
    result = explain.explain_case(
        case.with_label(np.zeros_like(case.label)), tmp_path, embedder=HashEmbedder()
    )
    assert result["summary"]["empty"] and result["slices"] == [] and result["mesh"] is None
    assert [s["category"] for s in result["summary"]["sentences"]] == ["presence:none"]
    assert any("mesh skipped" in n for n in result["notes"])
    assert not list(tmp_path.glob("*_mesh.*"))


def test_binary_scheme_and_single_slice_inputs(raw: Path, tmp_path: Path) -> None:
    case = read_case(raw / "Synth_000")
    assert case.label is not None
    seg = write_segmentation(
        case, (case.label > 0).astype(np.uint8), tmp_path / "Synth_000_seg.nii.gz", scheme="binary"
    )
    argv = [str(seg), "--label-scheme", "binary", "-o", str(tmp_path / "bin"), "--no-mesh"]
    assert _run(argv) == 0
    categories = _load(tmp_path / "bin", "Synth_000")["summary"]["categories"]
    assert not {"necrosis", "enhancement", "edema"} & set(categories)

    # A 2D input (Kaggle HDF5 slice) is described as a slice, not as a one-slice volume.
    synth = make_case(rng=np.random.default_rng(3), template="phantom", case_id="volume_3")
    write_layout(synth, tmp_path / "h5", layout="h5", max_slices=1)
    result = explain.explain_inputs(tmp_path / "h5", tmp_path / "h5_out", embedder=HashEmbedder())
    (data,) = result.explanations.values()
    assert data["scope"] == "slice" and data["summary"]["kind"] == "slice"
    assert data["mesh"] is None and len(data["slices"]) == 1


def test_user_sentence_library_and_bad_inputs(raw: Path, tmp_path: Path, capsys) -> None:
    library = json.loads(default_library_path().read_text())
    for sentence in library["sentences"]:
        sentence["text"] = sentence["text"].replace("hemisphere", "half of the brain")
    edited = tmp_path / "sentences.json"
    edited.write_text(json.dumps(library))
    argv = [str(raw / "Synth_000"), "-o", str(tmp_path / "out"), "--no-mesh"]
    assert _run([*argv, "--sentences", str(edited)]) == 0
    data = _load(tmp_path / "out", "Synth_000")
    assert data["summary"]["library"] == str(edited)
    assert "half of the brain" in data["summary"]["text"]

    broken = tmp_path / "broken.json"
    broken.write_text('{"sentences": [')
    capsys.readouterr()
    assert _run([*argv, "--sentences", str(broken)]) == 2
    assert _run([str(tmp_path / "missing"), "-o", str(tmp_path / "x")]) == 2
    assert _run([*argv, "--label-scheme", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("gliomaseg: error: ") for line in err)
    assert "broken.json" in err[0] and "missing" in err[1] and "nonsense" in err[2]


# --------------------------------------------------------------------------- real data

#: Bands as documented to users (the summary module's docstring), restated independently.
CASE_BANDS_ML, SLICE_BANDS_MM2 = (10.0, 50.0), (500.0, 1600.0)
SMALL_WORDS = re.compile(r"\b(small|tiny|little|smaller|minor)\b", re.IGNORECASE)
LARGE_WORDS = re.compile(r"\b(large|larger|big|huge|bulky|sizeable|sizable|massive)\b", re.I)
SIZE_NUMBER = re.compile(r"\(([\d.]+) (?:mL|mm²)")
NO_TUMOUR = re.compile(r"\b(no|without|absence of)\s+(\w+\s+)?(tumou?rs?|lesions?)\b", re.I)


def contradictions(summary: dict[str, Any]) -> list[str]:
    """Every way a summary's words disagree with the features it was made from."""
    feats, cats = summary["features"], summary["categories"]
    texts = [s["text"] for s in summary["sentences"]] + list(summary["statements"])
    if feats["n_voxels"] == 0:
        return [] if list(cats.values()) == ["presence:none"] else [f"empty but {cats}"]
    problems = [t for t in texts if NO_TUMOUR.search(t)]
    case = summary["kind"] == "case"
    value = feats["volume_ml_WT"] if case else feats["area_mm2_WT"]
    low, high = CASE_BANDS_ML if case else SLICE_BANDS_MM2
    band = "small" if value < low else "large" if value > high else "medium"
    if cats["size"] != f"size:{band}":
        problems.append(f"size {cats['size']} for {value:.1f}")
    problems += [t for t in texts if band != "small" and SMALL_WORDS.search(t)]
    problems += [t for t in texts if band != "large" and LARGE_WORDS.search(t)]
    stated = [float(m.group(1)) for t in summary["statements"] if (m := SIZE_NUMBER.search(t))]
    if len(stated) != 1 or abs(stated[0] - value) > 0.051 + 1e-5 * value:
        problems.append(f"stated size {stated} is not the measured {value:.2f}")
    if feats["laterality"] and cats.get("laterality") != f"laterality:{feats['laterality']}":
        problems.append(f"laterality {cats.get('laterality')} vs {feats['laterality']}")
    if feats["binary"]:
        problems += [a for a in ("necrosis", "enhancement", "edema") if a in cats]
    else:
        # Necrosis and enhancement are shares of the tumour core (NCR/NET + ET), recomputed
        # here from the volumes (areas for slices), not read from the core_fraction features.
        unit = "volume_ml" if case else "area_mm2"
        ncr, et = (float(feats[f"{unit}_{k}"]) for k in ("NCR", "ET"))
        expected = {"edema": "extensive" if feats["proportion_ED"] >= 0.5 else "limited"}
        if ncr + et > 0:
            expected["necrosis"] = "present" if ncr / (ncr + et) >= 0.05 else "absent"
        elif "necrosis" in cats:
            problems.append(f"necrosis {cats['necrosis']} without a tumour core")
        problems += [a for a, v in expected.items() if cats.get(a) != f"{a}:{v}"]
        no_enhancement = et / (ncr + et) < 0.05 if ncr + et > 0 else True
        if no_enhancement != (cats["enhancement"] == "enhancement:none"):
            problems.append(f"enhancement {cats['enhancement']} with ET {et} of core {ncr + et}")
    problems += [s["id"] for s in summary["sentences"] if s["category"] not in s["categories"]]
    return problems


@pytest.mark.realdata
@pytest.mark.slow
def test_real_cases_are_never_contradicted(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the real all-MiniLM-L6-v2 (packaged, no download)
    cases = [
        shared_data / "brats" / "BraTS2021_00000",
        shared_data / "lgg" / "kaggle_3m_sample" / "TCGA_DU_6399_19830416",
        shared_data / "brats2013_two_modality" / "brats_2013_pat0001_1",
    ]
    for path in cases:
        result = explain.explain_inputs(path, tmp_path, mesh=False)
        assert not result.failures, result.failures
        (data,) = result.explanations.values()
        assert data["summary"]["embedder"].endswith("all-MiniLM-L6-v2")
        assert data["summary"]["features"]["brain_reference"] != "field_of_view"
        assert len(data["slices"]) >= 5
        for item in [data["summary"], *data["slices"]]:
            check_summary(item)
        assert contradictions(data["summary"]) == [], data["case_id"]
        rows = {r["slice_index"]: r for r in _slice_rows(tmp_path, data["case_id"])}
        for item in data["slices"]:
            full = {**item, "kind": "slice", "features": rows[item["slice_index"]]}
            assert contradictions(full) == [], (data["case_id"], item["slice_index"])


def _slice_rows(out: Path, case_id: str) -> list[dict[str, Any]]:
    """Slice features back from the CSV, typed enough for :func:`contradictions`."""
    with (out / f"{case_id}_slice_features.csv").open() as f:
        rows = list(csv.DictReader(f))

    def value(text: str) -> Any:
        if text in ("True", "False"):
            return text == "True"
        try:
            return float(text)
        except ValueError:
            return text or None

    typed = [{k: value(v) for k, v in row.items()} for row in rows]
    for row in typed:
        row["slice_index"] = int(row["slice_index"])
    return typed


def test_contradiction_check_catches_planted_errors(raw: Path) -> None:
    """The real-data check above must be able to fail: plant each kind of error once."""
    case = read_case(raw / "Synth_000")
    summary = explain.describe_case(case, embedder=HashEmbedder()).summary
    assert contradictions(summary) == []
    wrong_size = {**summary, "categories": {**summary["categories"], "size": "size:large"}}
    no_tumour = {**summary, "statements": [*summary["statements"], "No tumour is seen."]}
    big_word = {**summary, "statements": [*summary["statements"], "A huge mass."]}
    features = {**summary["features"], "laterality": "bilateral"}
    wrong_side = {**summary, "features": features}
    flipped = "absent" if summary["categories"]["necrosis"].endswith("present") else "present"
    cats = {**summary["categories"], "necrosis": f"necrosis:{flipped}"}
    wrong_necrosis = {**summary, "categories": cats}
    for planted in (wrong_size, no_tumour, big_word, wrong_side, wrong_necrosis):
        assert contradictions(planted)


def test_a_long_batch_through_one_minilm_embedder(
    raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MiniLMEmbedder's cache overflows in long batches; explain must not trip over it."""

    class FakeModel:
        def encode(self, texts: Sequence[str], **_: object) -> np.ndarray:
            return HashEmbedder().embed(texts)

    monkeypatch.setattr(embedder_module, "_load_minilm", lambda device: FakeModel())
    monkeypatch.setattr(embedder_module, "_CACHE_LIMIT", 140)  # overflows mid-batch
    shared = embedder_module.MiniLMEmbedder()
    cases = [read_case(raw / "Synth_000"), read_case(raw / "Synth_001")]
    for case in cases * 3:
        desc = explain.describe_case(case, embedder=shared)
        assert desc.summary["embedder"] == shared.name


def test_summary_agreement_bench_runs(raw: Path, capsys) -> None:
    """bench/summary_agreement.py on the synthetic cases (hash embedder): valid JSON, 0 unsafe."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / "summary_agreement.py"
    spec = importlib.util.spec_from_file_location("bench_summary_agreement", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main([str(raw), "--note", "smoke"]) == 0
    report = json.loads(capsys.readouterr().out)
    results = report["results"]
    assert report["benchmark"] == "summary_agreement" and report["note"] == "smoke"
    assert results["n_cases"] == 2 and results["n_case_summaries"] == 2
    assert results["safety_violations"] == 0 and not results["failures"]
    overall = results["agreement"]["overall"]
    assert overall["n"] == sum(a["n"] for a in overall["per_aspect"].values())
    agree = sum(a["agree"] for a in overall["per_aspect"].values())
    assert overall["n"] > 0 and overall["rate"] == pytest.approx(agree / overall["n"])
    for aspect in overall["per_aspect"].values():
        assert aspect["rate"] == pytest.approx(aspect["agree"] / aspect["n"])


def test_repeated_case_ids_are_not_overwritten(raw: Path, tmp_path: Path) -> None:
    case = read_case(raw / "Synth_000")
    assert case.label is not None
    for run in ("run_a", "run_b"):
        write_segmentation(case, case.label, tmp_path / "in" / run / "Synth_000_seg.nii.gz")
    result = explain.explain_inputs(
        tmp_path / "in", tmp_path / "out", embedder=HashEmbedder(), mesh=False
    )
    assert list(result.explanations) == ["Synth_000"]
    ((path, message),) = result.failures
    assert "run_b" in path and "also at" in message and "run_a" in message
