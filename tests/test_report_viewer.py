"""The case report's interactive viewer (:mod:`gliomaseg.report.viewer`) and its NiiVue bundle.

Fast tests use a stand-in bundle (a few bytes of JavaScript), so they run without ``make
setup``; the browser test needs the real bundle (``make setup`` fetches it: its absence is a
setup failure, not a skip) and headless Chromium with SwiftShader WebGL. Screenshots go to
pytest's tmp dir and to ``test-artifacts/`` at the repository root (git-ignored).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import logging
import re
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.io.writers import write_layout
from gliomaseg.report import build_case_report, viewer_assets, write_case_report
from gliomaseg.report import viewer as viewer_mod
from gliomaseg.report.viewer import ReviewSlice, review_slices
from gliomaseg.report.viewer_assets import MISSING_HINT, Bundle, find_bundle
from gliomaseg.report.viewer_grid import brain_box, plan_grid
from gliomaseg.synthetic.phantoms import make_case
from test_report import (  # noqa: F401 (browser: the fixture)
    DevTools,
    _assert_clean,
    _load_and_check,
    _write_segment_outputs,
    browser,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CASE = "viewer_000"
FAKE = Bundle("0.0.0", base64.b64encode(gzip.compress(b"window.niivue={};")).decode(), 17, "")
VIEWER_DATA = re.compile(r'<script type="application/json" id="viewer-data">(.*?)</script>', re.S)
#: Canvas pixels that must differ from the black background for "the canvas draws".
MIN_DRAWN_FRACTION = 0.05


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gliomaseg segment`` outputs of one synthetic phantom (4 modalities, 48 x 48 x 24)."""
    root = tmp_path_factory.mktemp("viewer")
    case = make_case(
        rng=np.random.default_rng(7), template="phantom", shape=(48, 48, 24), case_id=CASE
    )
    folder = write_layout(case, root / "data", layout="brats2020")
    (root / "seg").mkdir()
    _write_segment_outputs(CASE, folder, root / "seg", kind=0)
    return root / "seg"


@dataclass
class Pages:
    """The case's report built with a stand-in bundle and without one (built once: slow)."""

    with_viewer: str
    without: str
    warnings_with: list[str]
    warnings_without: list[str]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def pages(case_dir: Path) -> Pages:
    logger = logging.getLogger("gliomaseg")
    built: dict[str, tuple[str, list[str]]] = {}
    for name, bundle in (("with", FAKE), ("without", None)):
        handler = _Records()
        logger.addHandler(handler)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(viewer_mod, "find_bundle", lambda b=bundle: b)
                built[name] = (build_case_report(case_dir, case_id=CASE).html, handler.lines)
        finally:
            logger.removeHandler(handler)
    return Pages(built["with"][0], built["without"][0], built["with"][1], built["without"][1])


def _payload(page: str) -> dict[str, Any]:
    match = VIEWER_DATA.search(page)
    assert match, "no viewer data in the page"
    return dict(json.loads(match.group(1)))


def _decode(b64: str) -> np.ndarray:
    img = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(b64, validate=True)))
    return np.asarray(img.dataobj)


# --------------------------------------------------------------------------- fast


def test_viewer_present_iff_bundle_found(pages: Pages) -> None:
    page = pages.without
    assert 'id="viewer-app"' not in page and 'id="niivue-bundle"' not in page
    assert re.search(r'<section id="viewer"[^>]*data-omitted', page)
    assert "make setup" in page
    assert pages.warnings_without == [MISSING_HINT]
    # The static figures are all there without the viewer.
    assert page.count('src="data:image/png;base64,') == 3

    page = pages.with_viewer
    assert 'id="viewer-app"' in page and FAKE.gzip_base64 in page
    assert not re.search(r'<section id="viewer"[^>]*data-omitted', page)
    assert pages.warnings_with == []
    assert page.count('src="data:image/png;base64,') == 3  # static figures kept for print
    assert "@media print" in page and "#viewer { display: none; }" in page


def test_embedded_volumes_decode_to_the_cropped_case(case_dir: Path, pages: Pages) -> None:
    from gliomaseg.report.case_data import find_case_files, load_volumes

    payload = _payload(pages.with_viewer)
    volumes = load_volumes(find_case_files(case_dir, CASE))
    box = brain_box(volumes)
    assert box is not None
    crop = tuple(b.stop - b.start for b in box)
    # 48 x 48 x 24 is under the voxel budget: cropped, not resampled.
    assert payload["grid"]["shape"] == list(crop) == payload["grid"]["source_shape"]
    assert [im["key"] for im in payload["images"]] == ["flair", "t1", "t1ce", "t2"]
    for im in payload["images"]:
        data = _decode(im["nifti"])
        assert data.dtype == np.uint8 and data.shape == crop
        original = volumes.images[im["key"]][box]
        assert np.array_equal(data == 0, original == 0)  # 0 only outside the brain
        assert data.max() == 255 and data[original != 0].min() >= 1
    labels = _decode(payload["labels"]["nifti"])
    assert volumes.prediction is not None
    assert np.array_equal(labels, volumes.prediction[box])
    assert [c["abbr"] for c in payload["labels"]["codes"]] == ["NCR/NET", "ED", "ET"]
    # Bookmarks: the summary's flagged slices, in order, on the embedded grid.
    flagged = [
        int(s)
        for s in json.loads((case_dir / f"{CASE}_summary.json").read_text())["flagged_slices"]
    ]
    assert flagged and [b["index"] for b in payload["bookmarks"]] == flagged
    for b in payload["bookmarks"]:
        assert b["voxel"][2] == b["index"] - box[2].start
        assert labels[b["voxel"][0], b["voxel"][1], b["voxel"][2]] > 0  # centred on tumour


def test_cli_no_viewer_leaves_it_out(
    case_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gliomaseg.cli.main import main

    monkeypatch.setattr(viewer_mod, "find_bundle", lambda: FAKE)
    out = tmp_path / "r.html"
    assert main(["report", str(case_dir), "--case", CASE, "-o", str(out), "--no-viewer"]) == 0
    page = out.read_text()
    assert 'id="viewer-app"' not in page and "--no-viewer" in page


def test_binary_case_has_one_tumour_label() -> None:
    """An LGG-like case (3 channels, tumour vs background, thick slices, no summary list)."""
    from gliomaseg.report.case_data import CaseFiles, CaseVolumes

    rng = np.random.default_rng(0)
    brain = np.zeros((40, 36, 12), dtype=bool)
    brain[5:35, 4:32, 1:11] = True
    images = {
        m: np.where(brain, rng.uniform(50, 150, brain.shape), 0).astype(np.float32)
        for m in ("pre-contrast", "flair", "post-contrast")
    }
    prediction = np.zeros(brain.shape, dtype=np.uint8)
    prediction[15:26, 10:21, 4:8] = 1  # centroid (20, 15) in every slice
    volumes = CaseVolumes(
        images=images, prediction=prediction, spacing=(0.5, 0.5, 3.0), binary=True
    )
    files = CaseFiles("lgg", Path("."), {"flagged_slices": [6, 5]})
    payload = viewer_mod.viewer_payload(files, volumes)
    assert payload is not None
    # Known modalities first (as in the static figures), then the layout's other channels.
    assert [im["key"] for im in payload["images"]] == ["flair", "pre-contrast", "post-contrast"]
    assert [c["abbr"] for c in payload["labels"]["codes"]] == ["tumour"]
    assert set(np.unique(_decode(payload["labels"]["nifti"]))) == {0, 1}
    assert [b["index"] for b in payload["bookmarks"]] == [6, 5]
    # Crop box (margin 2) starts at (3, 2, 0); the grid is not resampled (under budget).
    assert [b["voxel"] for b in payload["bookmarks"]] == [[17, 13, 6], [17, 13, 5]]


def test_resampled_grid_keeps_the_voxel_budget_and_maps_slices() -> None:
    box = (slice(50, 186), slice(30, 201), slice(5, 151))  # a BraTS brain box, 1 mm
    grid = plan_grid((1.0, 1.0, 1.0), box, max_voxels=1_000_000)
    assert np.prod(grid.shape) <= 1_000_000
    assert np.prod(grid.shape) > 900_000  # not needlessly coarse
    assert max(grid.spacing) < 1.6
    for axis in range(3):
        assert grid.to_embedded(axis, box[axis].start) == 0
        assert grid.to_embedded(axis, box[axis].stop - 1) == grid.shape[axis] - 1
        assert grid.to_source(axis, grid.shape[axis] - 1) == box[axis].stop - 1
    # Anisotropic (thick slices): the fine in-plane axes are coarsened first, Z is kept.
    grid = plan_grid(
        (0.5, 0.5, 3.0), (slice(0, 256), slice(0, 256), slice(0, 40)), max_voxels=500_000
    )
    assert grid.shape[2] == 40 and np.prod(grid.shape) <= 500_000
    assert grid.spacing[0] == pytest.approx(grid.spacing[1]) and grid.spacing[0] > 0.5
    # Under budget: untouched.
    assert plan_grid((1.0, 1.0, 2.0), (slice(2, 10),) * 3).shape == (8, 8, 8)


def test_review_slices_accepts_names_indices_and_ranked_objects() -> None:
    slices = [{"slice": f"s{z}", "index": z, "max_tumour_probability": 0.5} for z in range(10)]
    assert review_slices({"slices": slices, "flagged_slices": ["s3", "s1"]}) == [
        ReviewSlice(3, "s3"),
        ReviewSlice(1, "s1"),
    ]
    ranked = [
        {"index": 7, "score": 0.91, "reason": "disagreement"},
        {"slice_index": 2, "uncertainty": "0.4"},
        {"slice": "s5"},
        {"z": 4, "score": "n/a"},
        7,  # repeat: keeps its first place
        {"no index": 1},
        "not a slice",
        42,  # outside the volume
        True,
    ]
    assert review_slices({"slices": slices, "flagged_slices": ranked}) == [
        ReviewSlice(7, "s7", 0.91),
        ReviewSlice(2, "s2", 0.4),
        ReviewSlice(5, "s5"),
        ReviewSlice(4, "s4"),
    ]
    # Without the per-slice list, indices (and whole-number names) are taken as they are.
    assert review_slices({"flagged_slices": [5, "6", {"index": 9}]}) == [
        ReviewSlice(5, "5"),
        ReviewSlice(6, "6"),
        ReviewSlice(9, "9"),
    ]
    assert review_slices({}) == []


def test_report_has_no_external_urls_outside_comments(pages: Pages) -> None:
    page = pages.with_viewer
    if (real := find_bundle()) is not None:
        # The real bundle is embedded gzip + base64 (its shader comments hold a few URLs,
        # never fetched: the browser test checks that no request leaves the page).
        page = page.replace(FAKE.gzip_base64, real.gzip_base64)
    assert 'id="viewer-app"' in page
    outside = re.sub(r"<!--.*?-->", "", page, flags=re.S)
    assert re.findall(r"https?://[^\s\"'<>]*", outside) == []
    # The Content-Security-Policy still forbids loading anything.
    assert "default-src 'none'" in page


def test_report_size_stays_under_cap(case_dir: Path, pages: Pages) -> None:
    """The viewer adds its bundle, the embedded volumes and a few kB of controls and script."""
    from gliomaseg.report.case_data import find_case_files, load_volumes

    payload = _payload(pages.with_viewer)
    embedded = sum(len(im["nifti"]) for im in payload["images"]) + len(payload["labels"]["nifti"])
    # Stated cap: 4 volumes of ~27k voxels, gzip uint8, fit in 120 kB of base64; the rest of
    # the viewer (controls, script, style, bookmarks) in 24 kB.
    assert embedded < 120_000, embedded
    added = len(pages.with_viewer) - len(pages.without) - len(FAKE.gzip_base64)
    assert added < embedded + 24_000, added
    # A voxel budget below the crop box resamples every volume onto one smaller grid.
    files = find_case_files(case_dir, CASE)
    small = viewer_mod.viewer_payload(files, load_volumes(files), max_voxels=4_000)
    assert small is not None
    shape = tuple(small["grid"]["shape"])
    assert np.prod(shape) <= 4_000
    assert all(_decode(im["nifti"]).shape == shape for im in small["images"])
    labels = _decode(small["labels"]["nifti"])
    assert labels.shape == shape and set(np.unique(labels)) <= {0, 1, 2, 3} and labels.any()
    assert sum(len(im["nifti"]) for im in small["images"]) < embedded / 2


# --------------------------------------------------------------------------- bundle


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_bundle_install_checks_the_pinned_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = _tarball(
        {
            viewer_assets.BUNDLE_MEMBER: b"window.niivue = {};",
            "package/package.json": json.dumps(
                {"license": "BSD-2-Clause", "dependencies": {"fflate": "^0.8.2"}}
            ).encode(),
        }
    )
    with pytest.raises(ValueError, match="hash mismatch"):
        viewer_assets.install_bundle(tarball, tmp_path)
    assert find_bundle(tmp_path) is None
    digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    monkeypatch.setattr(viewer_assets, "NIIVUE_INTEGRITY", f"sha512-{digest}")
    viewer_assets.verify_integrity(tarball, f"sha512-{digest}")
    with pytest.raises(ValueError, match="hash mismatch"):
        viewer_assets.verify_integrity(tarball + b"x", f"sha512-{digest}")
    monkeypatch.setattr(viewer_assets, "verify_integrity", lambda data: None)
    viewer_assets.install_bundle(tarball, tmp_path)
    bundle = find_bundle(tmp_path)
    assert bundle is not None and bundle.version == viewer_assets.NIIVUE_VERSION
    assert gzip.decompress(base64.b64decode(bundle.gzip_base64)) == b"window.niivue = {};"
    assert "BSD 2-Clause" in bundle.licence and "fflate" in bundle.licence
    # Another version installed: not used.
    (tmp_path / "VERSION").write_text("0.0.1\n")
    viewer_assets._load_bundle.cache_clear()
    assert find_bundle(tmp_path) is None


# --------------------------------------------------------------------------- browser


def _keep(path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)


def _wait_ready(tools: DevTools, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = tools.evaluate("document.getElementById('viewer-app').dataset.state")
        if state == "ready":
            return
        status = tools.evaluate("document.getElementById('viewer-status').textContent")
        assert state == "loading", f"viewer {state}: {status}"
        assert time.monotonic() < deadline, f"viewer not ready in {timeout} s: {status}"
        time.sleep(0.2)


def _canvas_shot(tools: DevTools, path: Path, element: str = "viewer-canvas") -> np.ndarray:
    """Screenshot of one element (by id), kept as an artifact; (H, W, 3) int16 RGB."""
    from PIL import Image

    rect = tools.evaluate(
        f"(() => {{ const r = document.getElementById('{element}').getBoundingClientRect();"
        " return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()"
    )
    x, y, w, h = rect
    clip = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
    data = tools.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(data["data"]))
    _keep(path)
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _drawn_fraction(rgb: np.ndarray) -> float:
    """Share of pixels that differ from the viewer's black background."""
    return float((np.abs(rgb).max(axis=2) > 24).mean())


@pytest.mark.browser
def test_viewer_draws_offline_in_headless_chromium(
    case_dir: Path,
    browser: DevTools,  # noqa: F811
    tmp_path: Path,
) -> None:
    if find_bundle() is None:
        pytest.fail(MISSING_HINT)
    page = write_case_report(case_dir, tmp_path / "viewer_report.html", case_id=CASE)
    _load_and_check(browser, page, tmp_path / "report_viewer_page.png")
    _wait_ready(browser)
    url = page.resolve().as_uri()

    _canvas_shot(browser, tmp_path / "report_viewer_section.png", element="viewer")
    first = _canvas_shot(browser, tmp_path / "report_viewer_multiplanar.png")
    assert _drawn_fraction(first) >= MIN_DRAWN_FRACTION

    js = "window.gliomasegViewer"
    browser.evaluate("document.querySelector('button[data-slice-type=\"0\"]').click()")
    assert browser.evaluate(f"{js}.nv.opts.sliceType") == 0
    browser.evaluate("document.querySelector('button[data-bookmark=\"0\"]').click()")
    want = browser.evaluate(f"{js}.data.bookmarks[0].voxel")
    got = browser.evaluate(
        f"Array.from({js}.nv.frac2vox({js}.nv.scene.crosshairPos)).map(Math.round)"
    )
    assert got == want
    status = browser.evaluate("document.getElementById('viewer-status').textContent")
    assert "axial slice" in status and "predicted:" in status and "no tumour" not in status
    axial = _canvas_shot(browser, tmp_path / "report_viewer_axial_bookmark.png")
    assert _drawn_fraction(axial) >= MIN_DRAWN_FRACTION

    # Overlay on vs off at the bookmarked (tumour) slice: the label colours show.
    browser.evaluate(
        "(() => { const s = document.getElementById('viewer-opacity'); s.value = 0;"
        " s.dispatchEvent(new Event('input')); })()"
    )
    assert browser.evaluate(f"{js}.segmentation.opacity") == 0
    bare = _canvas_shot(browser, tmp_path / "report_viewer_axial_no_overlay.png")
    assert np.abs(axial - bare).max(axis=2).astype(bool).mean() > 0.002

    # Hiding edema sets its colour's alpha to 0; the others stay.
    browser.evaluate("document.querySelector('input[data-code=\"2\"]').click()")
    alphas = browser.evaluate(
        f"Array.from({js}.segmentation.colormapLabel.lut).filter((_, i) => i % 4 === 3)"
    )
    assert alphas == [0, 255, 0, 255]
    # Another modality becomes the background.
    browser.evaluate('document.querySelector(\'input[name="viewer-image"][value="2"]\').click()')
    assert browser.evaluate(f"{js}.nv.volumes[0] === {js}.images[2]")
    _assert_clean(browser, url)
