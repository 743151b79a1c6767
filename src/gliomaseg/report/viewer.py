"""The case report's interactive viewer: NiiVue (WebGL) over the case's own volumes.

The section embeds, in the page itself (it still opens offline from disk):

* the NiiVue UMD bundle (:mod:`gliomaseg.report.viewer_assets`), gzip + base64, unpacked by
  the page with the browser's ``DecompressionStream``;
* every modality (channel) and the predicted label map as gzip NIfTI, base64: cropped to the
  brain (non-zero voxels of any image, and the masks), resampled so that each volume holds
  at most ``max_voxels`` voxels (the finest axes are coarsened first, towards one voxel
  size: images linearly, labels by nearest neighbour), and quantised to uint8 (images: the
  static figures' window, 1st-99th brain percentile, to 1..255, 0 outside the brain);
* the review slices from ``summary.json`` as bookmarks (:func:`review_slices`).

Controls: the shown modality, axial / coronal / sagittal / multiplanar, the overlay
opacity, one toggle per label, and one button per review slice. ``@media print`` hides the
section; the static figures stay for printing. Without the bundle the section is omitted
with a note and one warning line (:data:`~gliomaseg.report.viewer_assets.MISSING_HINT`).
"""

from __future__ import annotations

import base64
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.report.case_data import CaseFiles, CaseVolumes
from gliomaseg.report.framing import display_window
from gliomaseg.report.html import Section, esc, resource_text
from gliomaseg.report.style import CONTOUR_COLOURS, MODALITY_TITLES, words
from gliomaseg.report.viewer_assets import MISSING_HINT, Bundle, find_bundle
from gliomaseg.report.viewer_grid import (
    MAX_VIEWER_VOXELS,
    Grid,
    brain_box,
    nifti_gz,
    plan_grid,
    quantise,
    resample,
)

log = logging.getLogger(__name__)

#: Keys of a review-slice object in ``flagged_slices`` that hold the axial index, in order
#: of preference (``slice`` holds the slice's name, as in ``summary["slices"]``).
INDEX_KEYS = ("index", "slice_index", "z")
#: Keys of a review-slice object that hold its score (higher: review first).
SCORE_KEYS = ("score", "uncertainty")
#: Fill colour of each internal label code (binary schemes: code 1 is "tumour"); the hues
#: of the static figures' outlines: edema fills what only the whole tumour outlines.
LABEL_COLOURS: dict[str, str] = {
    "NCR/NET": CONTOUR_COLOURS["TC"],
    "ED": CONTOUR_COLOURS["WT"],
    "ET": CONTOUR_COLOURS["ET"],
    "tumour": CONTOUR_COLOURS["WT"],
}
_MULTICLASS_LABELS = ("NCR/NET", "ED", "ET")


@dataclass(frozen=True)
class ReviewSlice:
    """One bookmark: a slice the summary asks a reviewer to look at.

    Attributes:
        index: Axial index in the canonical RAS+ volume (``summary["slices"][i]["index"]``).
        name: The slice's name in the input (``summary["slices"][i]["slice"]``), else the index.
        score: Its review score when the summary gives one (higher: review first), else None.
    """

    index: int
    name: str
    score: float | None = None


def review_slices(summary: dict[str, Any]) -> list[ReviewSlice]:
    """The review slices of a summary, in the summary's order (a ranked list stays ranked).

    ``summary["flagged_slices"]`` may hold, in any mix:

    * slice names (strings), as ``gliomaseg segment`` writes them: looked up in
      ``summary["slices"]`` (``{"slice": name, "index": z}``); a name that is not there but
      is a whole number is taken as the index;
    * axial indices (ints);
    * objects ``{"index": z, "score": s, ...}``: the index under one of :data:`INDEX_KEYS`,
      else a name under ``"slice"``; the score (optional) under one of :data:`SCORE_KEYS`.

    Entries that match none of these, or name an index outside ``summary["slices"]`` when
    that list is known, are skipped; repeats keep their first place.
    """
    slices = [s for s in summary.get("slices") or [] if isinstance(s, dict) and "index" in s]
    by_name = {str(s.get("slice", s["index"])): int(s["index"]) for s in slices}
    names = {int(s["index"]): str(s.get("slice", s["index"])) for s in slices}
    out: list[ReviewSlice] = []
    seen: set[int] = set()
    for entry in summary.get("flagged_slices") or []:
        index, score = _entry_index(entry, by_name), None
        if isinstance(entry, dict):
            score = next((_number(entry[k]) for k in SCORE_KEYS if k in entry), None)
        if index is None or index in seen or (names and index not in names):
            continue
        seen.add(index)
        out.append(ReviewSlice(index, names.get(index, str(index)), score))
    return out


def _entry_index(entry: Any, by_name: dict[str, int]) -> int | None:
    if isinstance(entry, bool):
        return None
    if isinstance(entry, int):
        return entry
    if isinstance(entry, str):
        if entry in by_name:
            return by_name[entry]
        return int(entry) if entry.strip().isdigit() else None
    if isinstance(entry, dict):
        for key in INDEX_KEYS:
            if isinstance(entry.get(key), int) and not isinstance(entry[key], bool):
                return int(entry[key])
        if "slice" in entry:
            return _entry_index(entry["slice"], by_name)
    return None


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def viewer_payload(
    files: CaseFiles, volumes: CaseVolumes, *, max_voxels: int = MAX_VIEWER_VOXELS
) -> dict[str, Any] | None:
    """What the page's viewer script reads (JSON-able); None when there is no image.

    Returns:
        ``{"images": [{"key", "title", "nifti"}], "labels": {"nifti", "codes": [{"code",
        "abbr", "name", "colour"}]} | None, "bookmarks": [{"index", "name", "score",
        "voxel"}], "grid": {"start", "source_shape", "shape", "spacing"}}``; ``nifti``
        fields are base64 gzip NIfTI; ``voxel`` is the bookmark's embedded (x, y, z).
    """
    if not volumes.images:
        return None
    box = brain_box(volumes)
    if box is None:
        return None
    grid = plan_grid(volumes.spacing, box, max_voxels=max_voxels)
    order = [m for m in MODALITY_TITLES if m in volumes.images]
    order += [m for m in volumes.images if m not in order]
    images = []
    for key in order:
        data = volumes.images[key]
        small = resample(quantise(data[box], display_window(data)), grid, order=1)
        images.append(
            {
                "key": key,
                "title": MODALITY_TITLES.get(key, key),
                "nifti": _b64(nifti_gz(small, grid.spacing)),
            }
        )
    labels = None
    small_labels = None
    if volumes.prediction is not None:
        small_labels = resample(np.asarray(volumes.prediction[box], np.uint8), grid, order=0)
        names = ("tumour",) if volumes.binary else _MULTICLASS_LABELS
        codes = [
            {"code": k + 1, "abbr": n, "name": words(n), "colour": LABEL_COLOURS[n]}
            for k, n in enumerate(names)
        ]
        labels = {"nifti": _b64(nifti_gz(small_labels, grid.spacing)), "codes": codes}
    return {
        "images": images,
        "labels": labels,
        "bookmarks": _bookmarks(files.summary, grid, small_labels),
        "grid": {
            "start": list(grid.start),
            "source_shape": list(grid.source_shape),
            "shape": list(grid.shape),
            "spacing": [round(s, 4) for s in grid.spacing],
        },
    }


def _bookmarks(
    summary: dict[str, Any], grid: Grid, labels: NDArray[np.uint8] | None
) -> list[dict[str, Any]]:
    """Review slices in the embedded grid, the crosshair on the slice's tumour centroid."""
    out = []
    for item in review_slices(summary):
        z = grid.to_embedded(2, item.index)
        centre = [m // 2 for m in grid.shape[:2]]
        if labels is not None and labels[:, :, z].any():
            centre = [round(float(c)) for c in np.argwhere(labels[:, :, z] > 0).mean(axis=0)]
        out.append(
            {"index": item.index, "name": item.name, "score": item.score, "voxel": [*centre, z]}
        )
    return out


# --------------------------------------------------------------------------- section


def viewer_section(
    files: CaseFiles,
    volumes: CaseVolumes,
    *,
    bundle: Bundle | None = None,
    max_voxels: int = MAX_VIEWER_VOXELS,
    enabled: bool = True,
) -> Section:
    """The ``viewer`` section; omitted (with a warning logged) when the bundle is absent.

    Args:
        files, volumes: The case (:func:`~gliomaseg.report.case_data.find_case_files`,
            :func:`~gliomaseg.report.case_data.load_volumes`), canonical RAS+, uncropped.
        bundle: The NiiVue bundle (default: :func:`find_bundle`, never downloaded).
        max_voxels: Most voxels of one embedded volume.
        enabled: False: the section is omitted (``gliomaseg report --no-viewer``).
    """
    title = "Interactive viewer"
    if not enabled:
        return Section("viewer", title, omitted="left out on request (--no-viewer)")
    bundle = bundle if bundle is not None else find_bundle()
    if bundle is None:
        log.warning(MISSING_HINT)
        return Section(
            "viewer", title, omitted=MISSING_HINT.removeprefix("interactive viewer left out: ")
        )
    payload = viewer_payload(files, volumes, max_voxels=max_voxels)
    if payload is None:
        return Section("viewer", title, omitted="no input image could be read (see warnings)")
    return Section("viewer", title, viewer_html(payload, bundle))


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: no ``</script>`` or ``<!--`` can appear."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def viewer_html(payload: dict[str, Any], bundle: Bundle) -> str:
    """The section body: controls, canvas, data, the bundle and the viewer script."""
    # Long: one HTML template with its controls; splitting it would scatter the markup.
    images = "".join(
        f'<label><input type="radio" name="viewer-image" value="{k}"{" checked" if k == 0 else ""}>'
        f" {esc(im['title'])}</label>"
        for k, im in enumerate(payload["images"])
    )
    views = "".join(
        f'<button type="button" data-slice-type="{t}" aria-pressed="{str(t == 3).lower()}">'
        f"{name}</button>"
        for t, name in ((0, "axial"), (1, "coronal"), (2, "sagittal"), (3, "multiplanar"))
    )
    labels = payload["labels"]
    toggles = "".join(
        f'<label><input type="checkbox" data-code="{c["code"]}" checked>'
        f'<span class="swatch" style="background:{esc(c["colour"])}"></span>'
        f"{esc(c['name'])} ({esc(c['abbr'])})</label>"
        for c in (labels or {}).get("codes", [])
    )
    marks = "".join(
        f'<button type="button" data-bookmark="{k}">slice {esc(b["name"])}'
        + (f" ({b['score']:.2f})" if b["score"] is not None else "")
        + "</button>"
        for k, b in enumerate(payload["bookmarks"])
    )
    grid = payload["grid"]
    spacing = " x ".join(f"{s:.2f}" for s in grid["spacing"])
    resampled = ", resampled" if grid["shape"] != grid["source_shape"] else ""
    overlay = (
        f'<fieldset><legend>Segmentation</legend><label>opacity <input type="range" '
        f'id="viewer-opacity" min="0" max="100" value="50"></label>{toggles}</fieldset>'
        if labels
        else ""
    )
    bookmarks = (
        f'<fieldset class="viewer-bookmarks"><legend>Review slices (summary order)</legend>'
        f"{marks}</fieldset>"
        if marks
        else '<p class="note">The summary flags no slice for review.</p>'
    )
    return (
        f"<style>{resource_text('report_viewer.css')}</style>"
        '<div id="viewer-app" class="viewer" data-state="loading">'
        '<div class="viewer-controls">'
        f"<fieldset><legend>Image</legend>{images}</fieldset>"
        f'<fieldset class="viewer-views"><legend>View</legend>{views}</fieldset>'
        f"{overlay}{bookmarks}</div>"
        '<div class="viewer-stage"><canvas id="viewer-canvas" width="960" height="600">'
        "</canvas></div>"
        '<p id="viewer-status" class="viewer-status" role="status">Loading the viewer ...</p>'
        '<p class="note">Radiological convention (the patient\'s right on the left). Volumes '
        f"cropped to the brain{resampled} ({esc(spacing)} mm voxels) and quantised to 8 bits "
        "for this page; measure on the original files. Click to move the crosshair, scroll to "
        "change slice, right-drag for contrast. Printing shows the static figures "
        "instead.</p></div>"
        f'<script type="application/json" id="viewer-data">{_script_json(payload)}</script>'
        f"<!-- {_comment_text(bundle.licence)} -->"
        f'<script type="application/octet-stream" id="niivue-bundle" data-version='
        f'"{esc(bundle.version)}" data-encoding="gzip+base64">{bundle.gzip_base64}</script>'
        f"<script>{resource_text('report_viewer.js')}</script>"
    )


def _comment_text(text: str) -> str:
    """Text safe inside an HTML comment (no ``--``, no ``>`` right after a dash)."""
    return text.replace("--", "- -").replace(">", "&gt;")
