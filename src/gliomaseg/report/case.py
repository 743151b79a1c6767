"""``gliomaseg report``: one self-contained HTML page per segmented case.

Sections, in page order (each keeps its ``id`` and ``data-section`` even when omitted for
lack of input, with a note saying which file is missing and which command writes it):

``overview``  ``warnings``  ``viewer`` (interactive, :mod:`gliomaseg.report.viewer`)
``slices`` (the four modalities with the masks outlined)
``probability``  ``slice-probability``  ``volumes``  ``features``  ``summary``
``render`` (3D)  ``inputs`` (files and brain intensity percentiles)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.report import figures as figs
from gliomaseg.report.case_data import (
    CaseFiles,
    CaseVolumes,
    case_warnings,
    choose_slices,
    crop_in_plane,
    display_window,
    find_case_files,
    intensity_stats,
    load_volumes,
    reference_scores,
    summary_ids,
)
from gliomaseg.report.html import (
    PNG_SIGNATURE,
    Figure,
    Section,
    all_figures,
    definition_list,
    esc,
    fmt,
    render_page,
    table,
    write_page,
)
from gliomaseg.report.style import CONTOUR_COLOURS, MODALITY_TITLES, words
from gliomaseg.report.viewer import viewer_section

log = logging.getLogger(__name__)

CASE_SECTIONS: tuple[str, ...] = (
    "overview",
    "warnings",
    "viewer",
    "slices",
    "probability",
    "slice-probability",
    "volumes",
    "features",
    "summary",
    "render",
    "inputs",
)
#: Output channel names by channel count when the summary does not record them (the
#: shipped targets: binary, regions, classes4).
_DEFAULT_OUTPUTS: dict[int, tuple[str, ...]] = {
    1: ("tumour",),
    3: ("WT", "TC", "ET"),
    4: ("background", "NCR/NET", "ED", "ET"),
}
_LABEL_ROWS = (("NCR/NET", "label"), ("ED", "label"), ("ET", "label"))
_REGION_ROWS = (("WT", "region"), ("TC", "region"), ("ET", "region"))


@dataclass
class Report:
    """A rendered page: the HTML, its figures (for ``--figures``), its warnings and, with a
    reference, the scores against it (:func:`~gliomaseg.report.case_data.reference_scores`)."""

    html: str
    figures: list[Figure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    reference_scores: dict[str, dict[str, float]] | None = None


def build_case_report(
    case_dir: str | Path,
    *,
    case_id: str | None = None,
    reference: str | Path | None = None,
    reference_scheme: str | None = None,
    explain_dir: str | Path | None = None,
    viewer: bool = True,
) -> Report:
    """Render the report of one case.

    Args:
        case_dir: Output folder of ``gliomaseg segment`` (``<id>_summary.json``...).
        case_id: The case; may be left out when the folder holds exactly one summary.
        reference: Reference label map (NIfTI, or a dataset folder holding the case),
            outlined dashed and added to the volume table.
        reference_scheme: Label scheme of the reference (default: guessed).
        explain_dir: Folder of ``gliomaseg explain`` outputs (default: ``case_dir``).
        viewer: Include the interactive viewer (when its bundle is installed).

    Returns:
        The :class:`Report` (nothing is written).

    Raises:
        ValueError: missing folder, no or several summaries without ``case_id``, unreadable
            summary, unreadable reference or a reference on another grid.
    """
    cid = case_id or _only_case(case_dir)
    files = find_case_files(case_dir, cid, explain_dir=explain_dir)
    volumes = load_volumes(files, reference=reference, reference_scheme=reference_scheme)
    warnings = case_warnings(files, volumes)
    scores = reference_scores(volumes)
    slices = choose_slices(files.summary, volumes.prediction)
    shown = crop_in_plane(volumes)
    sections = [
        _overview(files, volumes),
        _warnings_section(warnings),
        viewer_section(files, volumes, enabled=viewer),
        _slices_section(files, shown, slices),
        _probability_section(files, shown, slices),
        _slice_chart_section(files, slices),
        *_review_section(files),
        _volumes_section(files, volumes, scores),
        _features_section(files),
        _summary_section(files),
        _render_section(files),
        _inputs_section(files, volumes),
    ]
    page = render_page(
        title=f"Case report: {cid}",
        subtitle=_subtitle(files.summary),
        sections=sections,
    )
    return Report(
        html=page,
        figures=all_figures(sections),
        warnings=warnings,
        sections=sections,
        reference_scores=scores,
    )


def write_case_report(
    case_dir: str | Path,
    output: str | Path | None = None,
    *,
    case_id: str | None = None,
    reference: str | Path | None = None,
    reference_scheme: str | None = None,
    explain_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
    viewer: bool = True,
) -> Path:
    """Write the report of one case atomically (default ``<case_dir>/<id>_report.html``).

    ``figures_dir`` also receives every figure as ``<id>_<name>.png``. Arguments and errors
    as in :func:`build_case_report`.
    """
    cid = case_id or _only_case(case_dir)
    report = build_case_report(
        case_dir,
        case_id=cid,
        reference=reference,
        reference_scheme=reference_scheme,
        explain_dir=explain_dir,
        viewer=viewer,
    )
    out = Path(output) if output is not None else Path(case_dir) / f"{cid}_report.html"
    return write_page(out, report.html, figures=report.figures, figures_dir=figures_dir)


def _only_case(case_dir: str | Path) -> str:
    ids = summary_ids(case_dir)
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise ValueError(
            f"{case_dir}: no <id>_summary.json here; pass the output folder of 'gliomaseg segment'"
        )
    raise ValueError(
        f"{case_dir}: holds {len(ids)} cases ({', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''});"
        " pass --case ID"
    )


def _subtitle(summary: dict[str, Any]) -> str:
    parts = [f"layout {summary.get('layout', '?')}"]
    if summary.get("model"):
        parts.append(f"model {Path(str(summary['model'])).name}")
    if summary.get("gliomaseg_version"):
        parts.append(f"segmented with gliomaseg {summary['gliomaseg_version']}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- sections


def _overview(files: CaseFiles, volumes: CaseVolumes) -> Section:
    s = files.summary
    vol = s.get("volumes_ml") or {}
    items: list[tuple[str, Any]] = [
        ("case", files.case_id),
        ("whole tumour", f"{fmt(vol.get('WT'))} mL" if "WT" in vol else None),
        ("hemisphere", _hemisphere(s)),
        ("components", s.get("components")),
        ("extent (mm, x y z)", s.get("extent_mm")),
        ("flagged slices", f"{len(s.get('flagged_slices') or [])} of {len(s.get('slices') or [])}"),
        ("flag threshold", s.get("flag_threshold")),
        ("case confidence", (s.get("review") or {}).get("confidence")),
        ("label scheme", s.get("label_scheme")),
        ("voxel size (mm)", s.get("spacing_mm")),
        ("test-time augmentation", s.get("tta")),
        ("postprocessing", _postprocessing_text(s.get("postprocessing"))),
        ("model", s.get("model")),
    ]
    if volumes.reference is not None:
        items.insert(2, ("reference", "outlined dashed; Dice, HD95 and volumes compared below"))
    return Section("overview", "Overview", definition_list(i for i in items if i[1] is not None))


def _postprocessing_text(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    if record.get("skipped"):
        return str(record["skipped"])
    return (
        f"components under {fmt(record.get('min_component_ml'))} mL removed: "
        f"{record.get('components_removed', 0)}; enhancing relabelled below "
        f"{fmt(record.get('et_to_ncr_below_ml'))} mL: {record.get('et_relabelled_voxels', 0)} voxels"
    )


def _warnings_section(warnings: list[str]) -> Section:
    if not warnings:
        return Section("warnings", "Warnings", '<p class="ok">No warnings.</p>')
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return Section("warnings", "Warnings", f'<ul class="warnings">{items}</ul>')


def _row_titles(files: CaseFiles, slices: list[int]) -> list[str]:
    probs = {int(s["index"]): s for s in files.summary.get("slices") or []}
    titles = []
    for z in slices:
        entry = probs.get(z)
        if entry is None:
            titles.append(f"slice {z}")
        else:
            titles.append(
                f"slice {entry['slice']}\np = {float(entry['max_tumour_probability']):.2f}"
            )
    return titles


def _slices_section(files: CaseFiles, volumes: CaseVolumes, slices: list[int]) -> Section:
    title = "Modalities at the flagged slices"
    if not volumes.images:
        return Section("slices", title, omitted="no input image could be read (see warnings)")
    if not slices:
        return Section("slices", title, omitted="no slice has tumour or tumour probability")
    images = {m: volumes.images[m] for m in MODALITY_TITLES if m in volumes.images}
    images.update({m: v for m, v in volumes.images.items() if m not in images})
    png = figs.modality_grid(
        images,
        slices,
        windows={m: display_window(v) for m, v in images.items()},
        spacing=volumes.spacing,
        row_titles=_row_titles(files, slices),
        prediction=volumes.prediction,
        reference=volumes.reference,
        binary=volumes.binary,
        orientation_known=volumes.orientation_known,
    )
    regions = ["WT"] if volumes.binary else list(CONTOUR_COLOURS)
    legend = ", ".join(
        f"{'tumour' if volumes.binary else words(r)} ({_colour_word(r)})" for r in regions
    )
    ref = "; reference: reddish purple, dashed" if volumes.reference is not None else ""
    which = "flagged" if files.summary.get("flagged_slices") else "most probable"
    fig = Figure(
        f"{files.case_id}_slices",
        png,
        alt=f"{len(slices)} {which} axial slices of each modality with the segmentation outlined",
        caption=(
            f"Axial slices ({which}; at most 4), {_convention(volumes)}. Predicted outlines: "
            f"{legend}{ref}."
        ),
    )
    return Section("slices", title, fig.html(), figures=[fig])


def _convention(volumes: CaseVolumes) -> str:
    if not volumes.orientation_known:
        return "orientation unknown (the input does not record it): sides are not marked"
    return "radiological convention: the patient's right is on the left, anterior at the top"


def _hemisphere(summary: dict[str, Any]) -> Any:
    """The summary's hemisphere, or why there is none."""
    if summary.get("hemisphere") is None and summary.get("hemisphere_note"):
        return f"not given ({summary['hemisphere_note']})"
    return summary.get("hemisphere")


def _colour_word(region: str) -> str:
    return {"WT": "yellow", "TC": "vermillion", "ET": "sky blue"}[region]


def output_names(summary: dict[str, Any], k: int) -> tuple[list[str], bool]:
    """Names of the K probability channels, and whether they were assumed from K."""
    recorded = summary.get("outputs") or (summary.get("target") or {}).get("names")
    if isinstance(recorded, list) and len(recorded) == k:
        return [str(n) for n in recorded], False
    if k in _DEFAULT_OUTPUTS:
        return list(_DEFAULT_OUTPUTS[k]), True
    return [f"output {i + 1}" for i in range(k)], True


def _probability_section(files: CaseFiles, volumes: CaseVolumes, slices: list[int]) -> Section:
    title = "Probability map"
    if files.probs is None:
        return Section(
            "probability",
            title,
            omitted=f"no {files.case_id}_probs.nii.gz in {files.folder} (run 'gliomaseg "
            "segment' with --save-probabilities)",
        )
    if volumes.probs is None or not slices:
        return Section("probability", title, omitted="the probability map could not be read")
    names, assumed = output_names(files.summary, volumes.probs.shape[0])
    keep = [k for k, n in enumerate(names) if n != "background"]
    underlay_name = next((m for m in ("flair", "t2", "t1ce", "t1") if m in volumes.images), None)
    underlay = volumes.images.get(underlay_name) if underlay_name else None
    png = figs.probability_grid(
        volumes.probs[keep],
        [words(names[k]) for k in keep],
        slices,
        spacing=volumes.spacing,
        row_titles=_row_titles(files, slices),
        underlay=underlay,
        window=display_window(underlay) if underlay is not None else (0.0, 1.0),
        orientation_known=volumes.orientation_known,
    )
    note = " Output names assumed from the channel count." if assumed else ""
    over = f" over {MODALITY_TITLES[underlay_name]}" if underlay_name else ""
    fig = Figure(
        f"{files.case_id}_probability",
        png,
        alt="probability of each network output at the shown slices",
        caption=f"Probability of each network output (0-1, viridis){over}; values under "
        f"0.02 are transparent.{note}",
    )
    return Section("probability", title, fig.html(), figures=[fig])


def _slice_chart_section(files: CaseFiles, slices: list[int]) -> Section:
    title = "Tumour probability per slice"
    entries = files.summary.get("slices") or []
    if not entries:
        return Section(
            "slice-probability", title, omitted="the summary records no per-slice probability"
        )
    ranked = "review" in files.summary  # its threshold is on the uncertainty score
    threshold = None if ranked else files.summary.get("flag_threshold")
    png = figs.slice_probability_chart(
        [int(e["index"]) for e in entries],
        [float(e["max_tumour_probability"]) for e in entries],
        threshold=None if threshold is None else float(threshold),
        chosen=slices,
    )
    flagged = len(files.summary.get("flagged_slices") or [])
    fig = Figure(
        f"{files.case_id}_slice_probability",
        png,
        alt="bar chart of the maximum tumour probability of every axial slice",
        caption=f"Maximum tumour probability of every axial slice; {flagged} slice(s) "
        + (
            "are flagged for review (ranked below); "
            if ranked
            else "at or above the flag threshold (vermillion) are flagged for review; "
        )
        + "triangles mark the slices shown above.",
    )
    return Section("slice-probability", title, fig.html(), figures=[fig])


def _review_section(files: CaseFiles) -> list[Section]:
    """The ranked review flags of the summary (none for older summaries)."""
    review = files.summary.get("review")
    if review is None:
        return []
    flags = review.get("flags") or []
    title = "Slices to review"
    if not flags:
        body = (
            f"<p>No slice reaches the uncertainty threshold {fmt(review.get('threshold'))}; "
            f"case confidence {fmt(review.get('confidence'))}.</p>"
        )
        return [Section("review", title, body)]
    rows = [(k, f.get("index"), f.get("score"), f.get("reason")) for k, f in enumerate(flags, 1)]
    body = (
        "<p>Most uncertain first (score 0-1 from the probabilities near the boundary and the "
        "disagreement of ensemble members or flips); slice numbers are indices of the input "
        "file's slice axis.</p>"
        + table(("rank", "slice", "score", "reason"), rows, numeric=(True, True, True, False))
    )
    return [Section("review", title, body)]


def _volumes_section(
    files: CaseFiles, volumes: CaseVolumes, scores: dict[str, dict[str, float]] | None = None
) -> Section:
    from gliomaseg.segment.postprocess import region_volumes

    title = "Volumes"
    predicted = files.summary.get("volumes_ml") or {}
    if not predicted:
        if scores:
            return Section("volumes", title, _reference_table(scores, volumes.spacing))
        return Section("volumes", title, omitted="the summary records no volumes")
    ref_vol: dict[str, float] = {}
    if volumes.reference is not None:
        voxel_ml = float(np.prod(volumes.spacing)) / 1000.0
        ref_vol = region_volumes(volumes.reference, voxel_ml, binary=volumes.binary)
    rows_spec = (
        [("WT", "region")]
        if volumes.binary or set(predicted) == {"WT"}
        else [
            *_LABEL_ROWS,
            *_REGION_ROWS,
        ]
    )
    headers = ["label or region", "kind", "abbreviation", "predicted (mL)"]
    if ref_vol:
        headers += ["reference (mL)", "difference (mL)"]
    rows = []
    for key, kind in rows_spec:
        name = "tumour" if key == "WT" and len(rows_spec) == 1 else words(key)
        row: list[Any] = [name, kind, key, predicted.get(key)]
        if ref_vol:
            ref = ref_vol.get(key)
            diff = None if ref is None or predicted.get(key) is None else predicted[key] - ref
            row += [ref, diff]
        rows.append(row)
    numeric = [False, False, False, True, True, True][: len(headers)]
    body = table(headers, rows, numeric=numeric) + _geometry_table(files.summary)
    if scores:
        body = _reference_table(scores, volumes.spacing) + body
    return Section("volumes", title, body)


def _reference_table(scores: dict[str, dict[str, float]], spacing: tuple[float, ...]) -> str:
    """Dice, HD95 and volumes per region against the reference (from gliomaseg.evaluate.metrics)."""
    from gliomaseg.evaluate.metrics import EMPTY_POLICIES

    rows = [
        [
            "tumour" if region == "tumour" else words(region),
            region,
            m["dice"],
            m["hd95_mm"],
            m["pred_volume_ml"],
            m["ref_volume_ml"],
            m["pred_volume_ml"] - m["ref_volume_ml"],
        ]
        for region, m in scores.items()
    ]
    headers = [
        "region",
        "abbreviation",
        "Dice",
        "HD95 (mm)",
        "predicted (mL)",
        "reference (mL)",
        "difference (mL)",
    ]
    voxel = " x ".join(f"{s:g}" for s in spacing)
    return (
        "<h3>Agreement with the reference</h3>"
        + table(headers, rows, numeric=[False, False, True, True, True, True, True])
        + f'<p class="note">The segmentation file against the reference at its voxel size '
        f"({esc(voxel)} mm), gliomaseg.evaluate.metrics; difference = predicted - reference. Empty "
        f"masks: {esc(EMPTY_POLICIES['brats'])}.</p>"
    )


def _geometry_table(summary: dict[str, Any]) -> str:
    bbox = summary.get("bbox_voxels") or {}
    rows = [
        ("connected components", summary.get("components")),
        ("hemisphere", _hemisphere(summary)),
        ("extent x, y, z (mm)", summary.get("extent_mm")),
        ("centroid, scanner RAS x, y, z (mm)", summary.get("centroid_mm")),
        ("centroid (input file's voxel indices)", summary.get("centroid_voxel")),
        (
            "bounding box start / stop (input file's voxel indices)",
            f"{fmt(bbox.get('start'))} / {fmt(bbox.get('stop'))}" if bbox else None,
        ),
    ]
    return "<h3>Location and extent</h3>" + table(
        ["measure", "value"], [r for r in rows if r[1] is not None]
    )


def _features_section(files: CaseFiles) -> Section:
    title = "Shape features"
    feats = files.features
    if not isinstance(feats, dict):
        return Section(
            "features",
            title,
            omitted=f"no {files.case_id}_features.json or _explanation.json in "
            f"{files.explain_dir} (run 'gliomaseg explain')",
        )
    skip = {"kind", "shape", "spacing_mm", "voxel_volume_ml", "binary"}
    rows = [
        [f"<code>{esc(k)}</code>", esc(fmt(v, 3)), esc(files.feature_docs.get(k, ""))]
        for k, v in feats.items()
        if k not in skip and not isinstance(v, dict)
    ]
    return Section(
        "features",
        title,
        table(["feature", "value", "meaning"], rows, raw=True, numeric=[False, True, False]),
    )


def _summary_section(files: CaseFiles) -> Section:
    title = "Plain-language summary"
    expl = files.explanation
    if not isinstance(expl, dict) or not expl.get("sentences"):
        return Section(
            "summary",
            title,
            omitted=f"no {files.case_id}_explanation.json in {files.explain_dir} (run "
            "'gliomaseg explain')",
        )
    rows = [
        [
            s.get("aspect"),
            s.get("category"),
            s.get("text"),
            evidence_text(s.get("evidence")),
            s.get("score"),
            "yes" if s.get("agreement") else f"no (top-1: {s.get('top1_id')})",
        ]
        for s in expl["sentences"]
    ]
    statements = "".join(f"<li>{esc(t)}</li>" for t in expl.get("statements") or [])
    notes = "".join(f"<li>{esc(n)}</li>" for n in files.explain_notes)
    body = (
        f'<p class="summary-text">{esc(expl.get("text", ""))}</p>'
        + table(
            [
                "aspect",
                "rule category",
                "chosen sentence",
                "measured (threshold)",
                "cosine score",
                "top-1 agrees",
            ],
            rows,
            numeric=[False, False, False, False, True, False],
        )
        + (f"<h3>What was measured</h3><ul>{statements}</ul>" if statements else "")
        + (f'<h3>Notes from explain</h3><ul class="note">{notes}</ul>' if notes else "")
        + f'<p class="note">Sentences are chosen from a curated library ({esc(expl.get("library", "?"))})'
        f" by cosine similarity of {esc(expl.get('embedder', '?'))} embeddings, restricted to "
        f"the rule category; agreement rate {fmt(expl.get('agreement_rate'))}.</p>"
    )
    return Section("summary", title, body)


def evidence_text(evidence: Any) -> str:
    """The comparisons behind a sentence's category, in one line ("" when not recorded).

    ``[{"quantity": "core_fraction_NCR", "value": 0.36, "op": ">=", "threshold": 0.05,
    "holds": true}]`` -> ``"core_fraction_NCR 0.36 >= 0.05: yes"``.
    """
    if not isinstance(evidence, list):
        return ""
    parts = []
    for check in evidence:
        if not isinstance(check, dict):
            continue
        unit = f" {check['unit']}" if check.get("unit") else ""
        parts.append(
            f"{check.get('quantity')} {fmt(check.get('value'))}{unit} {check.get('op')} "
            f"{fmt(check.get('threshold'))}{unit}: {'yes' if check.get('holds') else 'no'}"
        )
    return "; ".join(parts)


def _render_section(files: CaseFiles) -> Section:
    title = "3D render"
    if files.mesh_png is None:
        return Section(
            "render",
            title,
            omitted=f"no {files.case_id}_mesh.png in {files.explain_dir} (run 'gliomaseg explain')",
        )
    png = files.mesh_png.read_bytes()
    if not png.startswith(PNG_SIGNATURE):
        return Section("render", title, omitted=f"{files.mesh_png} is not a PNG image")
    fig = Figure(
        f"{files.case_id}_mesh",
        png,
        alt="three views of the 3D tumour surface",
        caption="Surface of the whole tumour at the true voxel spacing (gliomaseg explain).",
    )
    return Section("render", title, fig.html(), figures=[fig])


def _inputs_section(files: CaseFiles, volumes: CaseVolumes) -> Section:
    inputs = files.summary.get("inputs") or {}
    file_rows = [[role, str(path)] for role, path in inputs.items()]
    stats = intensity_stats(volumes.images)
    stat_rows = [
        [
            MODALITY_TITLES.get(m, m),
            s.get("p1"),
            s.get("p50"),
            s.get("p99"),
            s.get("max"),
            s.get("coverage"),
        ]
        for m, s in stats.items()
    ]
    body = table(["role", "file"], file_rows) if file_rows else "<p>No inputs recorded.</p>"
    if stat_rows:
        body += "<h3>Brain intensities</h3>" + table(
            [
                "modality",
                "1st percentile",
                "median",
                "99th percentile",
                "maximum",
                "brain coverage",
            ],
            stat_rows,
            numeric=[False, True, True, True, True, True],
        )
    return Section("inputs", "Inputs", body)
