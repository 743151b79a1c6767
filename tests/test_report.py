"""HTML reports: case, cohort and training pages, their inputs, warnings and errors.

The case outputs are made here without a model: ``<id>_seg.nii.gz`` is the synthetic label
(perturbed for some cases), ``<id>_probs.nii.gz`` smoothed region masks, ``<id>_summary.json``
what ``segment`` would write for them, and the ``explain`` outputs come from the
:mod:`gliomaseg.explain` functions with a bag-of-words embedder. The browser test opens the
pages in headless Chromium over the DevTools protocol (a small websocket client below) and
checks console errors, image decoding and network requests.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from gliomaseg.cli import report as commands
from gliomaseg.core.geometry import to_canonical
from gliomaseg.core.labels import BRATS2020, REGIONS
from gliomaseg.io.atomic import write_json_atomic
from gliomaseg.io.layouts import read_case
from gliomaseg.io.nifti import write_nifti
from gliomaseg.io.writers import write_layout
from gliomaseg.report import (
    CASE_SECTIONS,
    build_case_report,
    build_cohort_report,
    build_training_report,
    write_case_report,
    write_cohort_report,
    write_training_report,
)
from gliomaseg.report.checks import confidence_warnings, intensity_stats, intensity_warnings
from gliomaseg.report.framing import choose_slices
from gliomaseg.report.html import PNG_SIGNATURE
from gliomaseg.report.training import best_epoch, metric_words
from gliomaseg.report.viewer_assets import find_bundle
from gliomaseg.segment.postprocess import region_volumes, tumour_geometry
from gliomaseg.synthetic.phantoms import make_case

SHAPE = (48, 48, 24)
IDS = ("synth_000", "synth_001", "synth_002")
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


class HashEmbedder:
    """Bag of words hashed into 256 dimensions: fast and deterministic (no model load)."""

    name = "hash-bow"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
        return out


@dataclass
class Fixture:
    root: Path
    data: Path
    seg: Path
    explain: Path
    eval_dir: Path
    run_dir: Path


# --------------------------------------------------------------------------- fake outputs


def _prediction(label: np.ndarray, kind: int) -> np.ndarray:
    """Case 0: the label itself; 1: enhancing relabelled necrotic; 2: whole tumour grown."""
    pred = label.copy()
    if kind == 1:
        pred[pred == 3] = 1
    elif kind == 2:
        grown = ndimage.binary_dilation(label > 0, iterations=2)
        pred[grown & (label == 0)] = 2
    return pred


def _write_segment_outputs(case_id: str, folder: Path, out: Path, kind: int) -> None:
    """What ``gliomaseg segment --save-probabilities`` writes, from the synthetic label."""
    case = read_case(folder)
    src_affine = case.source_affine
    assert case.label is not None and src_affine is not None
    label = _prediction(case.label, kind)
    write_nifti(out / f"{case_id}_seg.nii.gz", case.to_source(BRATS2020.decode(label)), src_affine)
    probs = np.stack(
        [
            ndimage.gaussian_filter(np.isin(label, REGIONS[r]).astype(np.float32), 1.0)
            for r in REGIONS
        ]
    )
    probs = np.clip(probs * 1.6, 0.0, 1.0)
    quantised = np.rint(probs * 255).astype(np.uint8)
    write_nifti(
        out / f"{case_id}_probs.nii.gz",
        np.moveaxis(case.to_source(quantised), 0, -1),
        src_affine,
        dtype=np.uint8,
        slope=1.0 / 255,
    )
    per_slice = probs.max(axis=(0, 1, 2))
    brain = np.any(case.image != 0, axis=0) if case.image is not None else None
    summary = {
        "case_id": case_id,
        "gliomaseg_version": "test",
        "layout": case.layout,
        "inputs": dict(case.source),
        "model": "fake.pt",
        "modalities": list(case.modalities),
        "spacing_mm": list(case.spacing),
        "spacing_known": True,
        "voxel_volume_ml": case.voxel_volume_ml,
        "volumes_ml": region_volumes(label, case.voxel_volume_ml),
        **tumour_geometry(label, case.affine, brain=brain),
        "postprocessing": {"min_component_ml": 0.0, "components_removed": 0},
        "tta": False,
        "flag_threshold": 0.9,
        "slices": [
            {"slice": str(z), "index": z, "max_tumour_probability": round(float(p), 4)}
            for z, p in enumerate(per_slice)
        ],
        "flagged_slices": [str(z) for z, p in enumerate(per_slice) if p >= 0.9],
        "label_scheme": "brats2020",
    }
    write_json_atomic(out / f"{case_id}_summary.json", summary)


def _write_explain_outputs(case_id: str, folder: Path, seg_dir: Path, out: Path) -> None:
    """What ``gliomaseg explain`` writes (features, explanation, mesh PNG)."""
    from gliomaseg.explain.features import case_features, write_features
    from gliomaseg.explain.mesh import reconstruct_case
    from gliomaseg.explain.mesh_files import render_views
    from gliomaseg.explain.summary import summarise_case

    case = read_case(folder)
    raw = nib.load(str(seg_dir / f"{case_id}_seg.nii.gz"))
    codes, affine = to_canonical(BRATS2020.encode(np.asarray(raw.dataobj)), raw.affine)
    features = case_features(codes, affine=affine, image=case.image)
    write_features(features, out, stem=f"{case_id}_features")
    summary = summarise_case(features, embedder=HashEmbedder())
    # As ``gliomaseg explain`` writes it: the case summary inside a wrapper with notes.
    wrapper = {"case_id": case_id, "summary": summary, "notes": ["a note from explain"]}
    write_json_atomic(out / f"{case_id}_explanation.json", wrapper)
    render_views(reconstruct_case(case.with_label(codes)), out / f"{case_id}_mesh.png", dpi=50)


def _write_run(run_dir: Path) -> None:
    """A training run folder as ``gliomaseg train`` leaves it (best epoch: 3)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"")
    dice = [0.41, 0.66, 0.81, 0.78]
    lines = [
        "epoch,global_step,train_loss,lr,seconds,dice_WT,precision_WT,recall_WT,"
        "slice_dice_WT,dice_TC,dice_ET,dice_mean"
    ]
    for e, d in enumerate(dice, start=1):
        lines.append(
            f"{e},{20 * e},{1.2 / e:.4f},{0.01 / e},{0.4 + e},{d + 0.05},{d},{d + 0.1},"
            f"{d - 0.05},{d},{d - 0.05},{d}"
        )
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    write_json_atomic(run_dir / "config.json", {"name": "unet-test", "epochs": 4, "lr": 0.01})


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    from gliomaseg.evaluate.workflow import evaluate_folders

    root = tmp_path_factory.mktemp("report")
    fx = Fixture(root, root / "data", root / "seg", root / "explain", root / "eval", root / "run")
    for k, case_id in enumerate(IDS):
        case = make_case(
            rng=np.random.default_rng(k), template="phantom", shape=SHAPE, case_id=case_id
        )
        folder = write_layout(case, fx.data, layout="brats2020")
        _write_segment_outputs(case_id, folder, fx.seg, kind=k)
    _write_explain_outputs(IDS[0], fx.data / IDS[0], fx.seg, fx.explain)
    evaluate_folders(fx.seg, fx.data, fx.eval_dir, views=("case",))
    _write_run(fx.run_dir)
    return fx


def _png_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m, validate=True) for m in DATA_URI.findall(page)]


def _section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{re.escape(key)}".*?</section>', page, re.S)
    assert match, f"section {key} missing"
    return match.group(0)


# --------------------------------------------------------------------------- case report


def test_case_report_has_every_section_and_png_data_uris(outputs: Fixture) -> None:
    report = build_case_report(outputs.seg, case_id=IDS[0], explain_dir=outputs.explain)
    page = report.html
    # The viewer needs the NiiVue bundle ('make setup'); tests/test_report_viewer.py covers it.
    optional = {"viewer"} if find_bundle() is None else set()
    for key in CASE_SECTIONS:
        assert ("data-omitted" in _section(page, key)) == (key in optional), key
    images = _png_uris(page)
    assert len(images) == page.count("<img ") == 4  # slices, probability, chart, mesh
    assert all(png.startswith(PNG_SIGNATURE) for png in images)
    # Self-contained: no external resource anywhere.
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    for words in (
        "necrotic / non-enhancing core",
        "edema",
        "enhancing tumour",
        "whole tumour",
        "tumour core",
    ):
        assert words in _section(page, "volumes")
    summary = json.loads((outputs.seg / f"{IDS[0]}_summary.json").read_text())
    assert f"{summary['volumes_ml']['WT']:.3f}" in _section(page, "volumes")
    explanation = json.loads((outputs.explain / f"{IDS[0]}_explanation.json").read_text())
    summary_section = _section(page, "summary")
    assert f"{explanation['summary']['sentences'][0]['score']:.3f}" in summary_section
    assert "a note from explain" in summary_section
    assert "No warnings." in _section(page, "warnings"), report.warnings


def test_case_report_cli_reference_figures_and_atomic_write(
    outputs: Fixture, tmp_path: Path
) -> None:
    parser = argparse.ArgumentParser()
    commands.add_report_arguments(parser)
    reference = outputs.data / IDS[2] / f"{IDS[2]}_seg.nii.gz"
    out = tmp_path / "page.html"
    args = parser.parse_args(
        [
            str(outputs.seg),
            "--case",
            IDS[2],
            "--reference",
            str(reference),
            "-o",
            str(out),
            "--figures",
            str(tmp_path / "figs"),
        ]
    )
    assert commands.run_report(args) == 0
    page = out.read_text()
    volumes = _section(page, "volumes")
    assert "reference (mL)" in volumes and "difference (mL)" in volumes
    assert "reference: reddish purple, dashed" in page
    pngs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert pngs == [f"{IDS[2]}_{n}.png" for n in ("probability", "slice_probability", "slices")]
    assert all((tmp_path / "figs" / n).read_bytes().startswith(PNG_SIGNATURE) for n in pngs)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    # The predicted whole tumour was grown: it is bigger than the reference.
    summary = json.loads((outputs.seg / f"{IDS[2]}_summary.json").read_text())
    ref_ml = region_volumes(
        BRATS2020.encode(np.asarray(nib.load(str(reference)).dataobj)), summary["voxel_volume_ml"]
    )
    assert summary["volumes_ml"]["WT"] > ref_ml["WT"]


def test_report_every_case_into_a_folder(outputs: Fixture, tmp_path: Path) -> None:
    # Summaries only (no images, masks or maps): the batch logic is under test, not drawing.
    source = tmp_path / "seg"
    for case_id in IDS:
        summary = json.loads((outputs.seg / f"{case_id}_summary.json").read_text())
        write_json_atomic(source / f"{case_id}_summary.json", {**summary, "inputs": {}})
    (source / f"{IDS[1]}_summary.json").write_text("[]")  # one bad case: reported, others go on
    parser = argparse.ArgumentParser()
    commands.add_report_arguments(parser)
    out = tmp_path / "out"
    assert commands.run_report(parser.parse_args([str(source), "-o", str(out)])) == 2
    assert sorted(p.name for p in out.iterdir()) == [
        f"{IDS[0]}_report.html",
        f"{IDS[2]}_report.html",
    ]
    bad = parser.parse_args([str(source), "-o", str(tmp_path / "one.html")])
    assert commands.run_report(bad) == 2
    assert not (tmp_path / "one.html").exists()


def test_missing_inputs_omit_sections_with_a_note(outputs: Fixture, tmp_path: Path) -> None:
    summary = json.loads((outputs.seg / f"{IDS[0]}_summary.json").read_text())
    summary["inputs"] = {"flair": str(tmp_path / "gone_flair.nii.gz")}
    summary["spacing_known"] = False
    write_json_atomic(tmp_path / f"{IDS[0]}_summary.json", summary)
    report = build_case_report(tmp_path)
    page = report.html
    for key in ("slices", "probability", "features", "summary", "render"):
        assert "data-omitted" in _section(page, key), key
    assert f"no {IDS[0]}_probs.nii.gz" in _section(page, "probability")
    assert "gliomaseg explain" in _section(page, "render")
    for key in ("overview", "warnings", "slice-probability", "volumes", "inputs"):
        assert "data-omitted" not in _section(page, key), key
    text = " ".join(report.warnings)
    assert "gone_flair.nii.gz not found" in text
    assert "missing modality: T1 post-contrast" in text
    assert "spacing unknown" in text
    assert f"no {IDS[0]}_seg.nii.gz" in text


def test_bare_summarise_case_output_is_accepted(outputs: Fixture, tmp_path: Path) -> None:
    summary = json.loads((outputs.seg / f"{IDS[0]}_summary.json").read_text())
    write_json_atomic(tmp_path / f"{IDS[0]}_summary.json", {**summary, "inputs": {}})
    wrapper = json.loads((outputs.explain / f"{IDS[0]}_explanation.json").read_text())
    write_json_atomic(tmp_path / f"{IDS[0]}_explanation.json", wrapper["summary"])
    page = build_case_report(tmp_path).html
    assert "data-omitted" not in _section(page, "summary")
    features = _section(page, "features")  # taken from the explanation's features
    assert "data-omitted" not in features and "volume_ml_WT" in features


def test_warnings_for_low_confidence_and_unusual_intensity(
    outputs: Fixture, tmp_path: Path
) -> None:
    shutil.copy(outputs.seg / f"{IDS[1]}_seg.nii.gz", tmp_path)
    summary = json.loads((outputs.seg / f"{IDS[1]}_summary.json").read_text())
    for entry in summary["slices"]:
        entry["max_tumour_probability"] = min(entry["max_tumour_probability"], 0.6)
    summary["flagged_slices"] = []
    flair = nib.load(summary["inputs"]["flair"])
    constant = np.where(np.asarray(flair.dataobj) != 0, 7.0, 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(constant, flair.affine), str(tmp_path / "flair.nii.gz"))
    summary["inputs"]["flair"] = "flair.nii.gz"  # relative: resolved against the folder
    write_json_atomic(tmp_path / f"{IDS[1]}_summary.json", summary)
    warnings = build_case_report(tmp_path).warnings
    assert any(
        w.startswith("low confidence: no slice reaches the flag threshold 0.9") for w in warnings
    )
    assert any("mean of the per-slice maximum probability" in w for w in warnings)
    assert any("FLAIR is constant inside the brain" in w for w in warnings)


def test_intensity_checks_on_hand_made_volumes() -> None:
    rng = np.random.default_rng(3)
    brain = np.zeros((20, 20, 10), bool)
    brain[3:17, 3:17, 2:8] = True
    normal = np.where(brain, rng.normal(500, 60, brain.shape), 0).astype(np.float32)
    half = normal.copy()
    half[:12] = 0
    spiky = normal.copy()
    spiky[8, 8, 5] = 1e6
    clipped = np.where(brain, np.minimum(normal, 450), 0).astype(np.float32)
    stats = intensity_stats({"flair": normal, "t1": half, "t1ce": spiky, "t2": clipped})
    assert stats["flair"]["coverage"] == 1.0
    lines = intensity_warnings(stats)
    assert not any("FLAIR" in line for line in lines)
    assert any(line.startswith("unusual intensity: T1 is zero over") for line in lines)
    assert any("T1 post-contrast has extreme values" in line for line in lines)
    assert any("of T2 brain voxels sit at its maximum" in line for line in lines)


def test_choose_slices_thins_flagged_and_falls_back() -> None:
    slices = [
        {"slice": str(z), "index": z, "max_tumour_probability": p}
        for z, p in enumerate([0, 0.2, 0.95, 0.97, 0.99, 0.96, 0.93, 0.91, 0.92, 0.3])
    ]
    summary = {"slices": slices, "flagged_slices": [str(z) for z in range(2, 9)]}
    assert choose_slices(summary, None) == [2, 4, 6, 8]
    summary["flagged_slices"] = []
    assert choose_slices(summary, None) == [2, 3, 4, 5]
    label = np.zeros((4, 4, 10), np.uint8)
    label[:2, :2, 7] = 2
    assert choose_slices({"slices": []}, label) == [7]
    assert choose_slices({}, None) == []
    assert confidence_warnings({"slices": slices, "flag_threshold": 0.9}, None) == []


def test_bad_input_names_file_and_fix(outputs: Fixture, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nowhere: no such folder; pass the output folder"):
        build_case_report(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"missing_case_summary\.json: no summary for case"):
        build_case_report(outputs.seg, case_id="missing_case")
    with pytest.raises(ValueError, match=r"holds 3 cases .*pass --case ID"):
        build_case_report(outputs.seg)
    with pytest.raises(ValueError, match=r"per_case\.csv: not found; run 'gliomaseg evaluate'"):
        build_cohort_report(tmp_path)
    with pytest.raises(ValueError, match=r"metrics\.csv: not found"):
        build_training_report(tmp_path)
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), str(small))
    with pytest.raises(ValueError, match=r"small\.nii\.gz: reference grid"):
        build_case_report(outputs.seg, case_id=IDS[0], reference=small)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x_summary.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"x_summary\.json: not readable JSON"):
        build_case_report(broken)


def test_commands_import_no_heavy_modules() -> None:
    code = (
        "import sys, gliomaseg.report, gliomaseg.cli.report; "
        "print(sorted(m for m in ('matplotlib', 'nibabel', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- cohort and training


def test_cohort_report_links_worst_cases(outputs: Fixture, tmp_path: Path) -> None:
    reports = tmp_path / "cases"
    write_case_report(outputs.seg, reports / f"{IDS[1]}_report.html", case_id=IDS[1])
    out = write_cohort_report(
        outputs.eval_dir, tmp_path / "site" / "cohort.html", case_reports=reports
    )
    page = out.read_text()
    worst = _section(page, "worst")
    assert f'<a href="../cases/{IDS[1]}_report.html">{IDS[1]}</a>' in worst
    # Case 1 lost its enhancing tumour: the lowest mean Dice, listed first.
    assert worst.index(IDS[1]) < worst.index(IDS[2]) < worst.index(IDS[0])
    assert 'class="sortable"' in _section(page, "per-case")
    assert "<script>" in page and "http" not in page.split("<script>", 1)[1]
    images = _png_uris(page)
    assert len(images) == 2 and all(p.startswith(PNG_SIGNATURE) for p in images)
    for words in ("whole tumour", "tumour core", "enhancing tumour"):
        assert words in _section(page, "statistics")


def test_training_report(outputs: Fixture) -> None:
    report = build_training_report(outputs.run_dir)
    assert best_epoch([{"epoch": 1.0, "dice_mean": float("nan")}]) is None
    assert metric_words("slice_dice_WT") == "slice Dice, whole tumour"
    overview = _section(report.html, "overview")
    assert re.search(r"<dt>best epoch</dt><dd>3</dd>", overview)
    assert "epoch 3" in _section(report.html, "best")
    assert "&quot;unet-test&quot;" in _section(report.html, "config")
    assert [f.name for f in report.figures] == ["training_curves"]
    assert report.figures[0].png.startswith(PNG_SIGNATURE)
    assert 'class="sortable"' in _section(report.html, "epochs")


def test_report_cohort_command(outputs: Fixture, tmp_path: Path, capsys) -> None:
    from gliomaseg.cli.main import main

    page, figures = tmp_path / "site" / "cohort.html", tmp_path / "figs"
    argv = ["report-cohort", str(outputs.eval_dir), "-o", str(page), "--figures", str(figures)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(page)
    html = page.read_text()
    per_case = _section(html, "per-case")
    assert all(case_id in per_case for case_id in IDS)
    worst = _section(html, "worst")
    assert worst.index(IDS[1]) < worst.index(IDS[2]) < worst.index(IDS[0])
    pngs = sorted(figures.glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes().startswith(PNG_SIGNATURE) for p in pngs)
    # An evaluation folder without per_case.csv: one line naming it, exit 2, nothing written.
    argv = ["report-cohort", str(tmp_path / "figs"), "-o", str(tmp_path / "none.html")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "figs" in err[0]
    assert not (tmp_path / "none.html").exists()


def test_report_training_command(outputs: Fixture, tmp_path: Path, capsys) -> None:
    from gliomaseg.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(outputs.run_dir, run)
    assert main(["report-training", str(run), "--figures", str(tmp_path / "figs")]) == 0
    page = run / "training.html"  # the default place
    assert capsys.readouterr().out.strip() == str(page)
    html = page.read_text()
    assert re.search(r"<dt>best epoch</dt><dd>3</dd>", _section(html, "overview"))
    assert (tmp_path / "figs" / "training_curves.png").read_bytes().startswith(PNG_SIGNATURE)
    (run / "metrics.csv").unlink()
    assert main(["report-training", str(run), "-o", str(tmp_path / "t.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.csv" in err[0]
    assert not (tmp_path / "t.html").exists()


# --------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: text frames, client-side masking."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlparse(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        if b" 101 " not in head.split(b"\r\n", 1)[0] or accept not in head:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("DevTools websocket closed")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send(self, text: str, opcode: int = 0x1) -> None:
        data = text.encode()
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            b1, b2 = self._take(2)
            n = b2 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            mask = self._take(4) if b2 & 0x80 else None
            data = self._take(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b1 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools websocket closed by the browser")
            if opcode == 0x9:
                self.send(data.decode(errors="replace"), opcode=0xA)
                continue
            if opcode == 0xA:
                continue
            message += data
            if b1 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class DevTools:
    """Commands and events of one page target."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str, *, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == method:
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile, driven over the DevTools protocol."""
    exe = _chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("w")
    proc = subprocess.Popen(
        [
            exe,
            "--headless",
            "--no-sandbox",
            # WebGL (the case report's viewer) on the CPU, without a GPU.
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--mute-audio",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    ws = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"Chromium did not start: {(tmp_path / 'chromium.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            targets = json.load(r)
        page = next(t for t in targets if t["type"] == "page")
        ws = WebSocket(page["webSocketDebuggerUrl"])
        yield DevTools(ws)
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def _load_and_check(tools: DevTools, page: Path, shot: Path) -> dict[str, Any]:
    """Open a page; assert no console error, every image decoded, no request but the file."""
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.call(f"{domain}.enable")
    tools.events.clear()
    url = page.resolve().as_uri()
    tools.call("Page.navigate", url=url)
    tools.wait_for("Page.loadEventFired")
    images = tools.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert images and all(c and w > 0 and h > 0 for c, w, h in images), images
    size = tools.call("Page.getLayoutMetrics")["cssContentSize"]
    width, height = 1280, min(int(size["height"]) + 1, 16000)
    tools.call(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    data = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
    shot.write_bytes(base64.b64decode(data))
    tools.call("Emulation.clearDeviceMetricsOverride")
    requests = _assert_clean(tools, url)
    assert url in requests
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    return {"images": len(images), "requests": requests}


def _assert_clean(tools: DevTools, url: str) -> list[str]:
    """Assert no console error or exception so far, and no request but ``url`` and data URIs.

    Returns:
        Every requested URL.
    """
    errors = [
        e
        for e in tools.events
        if e["method"] == "Runtime.exceptionThrown"
        or (
            e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")
        )
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert errors == [], errors
    requests = [
        e["params"]["request"]["url"]
        for e in tools.events
        if e["method"] == "Network.requestWillBeSent"
    ]
    foreign = [u for u in requests if u != url and not u.startswith("data:")]
    assert foreign == [], requests
    return requests


def _keep_artifact(path: Path) -> None:
    target = os.environ.get("GLIOMASEG_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.mark.browser
def test_reports_open_cleanly_in_headless_chromium(
    outputs: Fixture, browser: DevTools, tmp_path: Path
) -> None:
    reports = tmp_path / "cases"
    case_page = write_case_report(
        outputs.seg,
        reports / f"{IDS[2]}_report.html",
        case_id=IDS[2],
        reference=outputs.data / IDS[2] / f"{IDS[2]}_seg.nii.gz",
    )
    first = write_case_report(
        outputs.seg, reports / f"{IDS[0]}_report.html", case_id=IDS[0], explain_dir=outputs.explain
    )
    cohort = write_cohort_report(outputs.eval_dir, tmp_path / "cohort.html", case_reports=reports)
    training = write_training_report(outputs.run_dir, tmp_path / "training.html")
    pages = {
        "report_case_full.png": first,
        "report_case_reference.png": case_page,
        "report_cohort.png": cohort,
        "report_training.png": training,
    }
    for name, page in pages.items():
        _load_and_check(browser, page, tmp_path / name)
        _keep_artifact(tmp_path / name)
        if page == cohort:
            # The inline sorter works: sorting by mean Dice puts the worst case first.
            browser.evaluate("document.querySelectorAll('#per-case-table th')[1].click()")
            first_row = browser.evaluate(
                "document.querySelector('#per-case-table tbody tr td').textContent"
            )
            assert first_row == IDS[1]


def test_ranked_review_flags_pick_the_panels_and_are_listed() -> None:
    from types import SimpleNamespace

    from gliomaseg.report.case_tables import review_section

    slices = [
        {"slice": str(z), "index": z, "max_tumour_probability": 0.99, "uncertainty": 0.1}
        for z in range(10)
    ]
    flags = [
        {"slice": str(z), "index": 9 - z, "score": s, "reason": "uncertain boundary"}
        for z, s in [(7, 0.8), (1, 0.6), (4, 0.5), (8, 0.4), (2, 0.3)]
    ]
    review = {"flags": flags, "confidence": 0.7, "threshold": 0.3, "max_flags": 10}
    summary = {"slices": slices, "flagged_slices": ["7", "1", "4", "8", "2"], "review": review}
    assert choose_slices(summary, None) == [1, 4, 7, 8]  # the four highest-ranked
    (section,) = review_section(SimpleNamespace(summary=summary))
    html = section.html()
    rows = re.findall(r"<tr>(.*?)</tr>", html)[1:]
    assert len(rows) == 5 and ">2<" in rows[0] and ">0.8" in rows[0]  # rank 1: input slice 2
    # the flag threshold thresholds the uncertainty score, not the peak probability
    assert confidence_warnings({**summary, "flag_threshold": 0.3}, None) == []
    none = {**summary, "flagged_slices": [], "review": {**review, "flags": []}}
    assert "No slice reaches" in review_section(SimpleNamespace(summary=none))[0].html()


def test_overview_says_where_the_flag_threshold_came_from():
    from gliomaseg.report.case_tables import _threshold_text

    review = {"threshold_source": "model"}
    assert _threshold_text({"flag_threshold": 0.1, "review": review}) == (
        "0.1 (the model's own, validated on its cross-validation)"
    )
    given = {"flag_threshold": 0.5, "review": {"threshold_source": "--flag-threshold"}}
    assert _threshold_text(given) == "0.5 (given with --flag-threshold)"
    assert _threshold_text({"flag_threshold": 0.3}) == "0.3"  # a summary from before the field
    assert _threshold_text({}) is None
