"""The text and table sections of a case report: overview, warnings, review flags, volumes
and agreement with a reference, shape features, the plain-language summary, the inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from gliomaseg.evaluate.metrics import EMPTY_POLICIES
from gliomaseg.io.outputs import EXPLANATION_SUFFIX, FEATURES_STEM
from gliomaseg.report.case_data import CaseFiles, CaseVolumes
from gliomaseg.report.checks import intensity_stats
from gliomaseg.report.html import Section, definition_list, esc, fmt, table
from gliomaseg.report.style import MODALITY_TITLES, words
from gliomaseg.segment.postprocess import region_volumes

_LABEL_ROWS = (("NCR/NET", "label"), ("ED", "label"), ("ET", "label"))


_REGION_ROWS = (("WT", "region"), ("TC", "region"), ("ET", "region"))


def overview_section(files: CaseFiles, volumes: CaseVolumes) -> Section:
    """``overview``: the case's key facts from its summary."""
    s = files.summary
    vol = s.get("volumes_ml") or {}
    items: list[tuple[str, Any]] = [
        ("case", files.case_id),
        ("whole tumour", f"{fmt(vol.get('WT'))} mL" if "WT" in vol else None),
        ("hemisphere", _hemisphere(s)),
        ("components", s.get("components")),
        ("extent (mm, x y z)", s.get("extent_mm")),
        ("flagged slices", f"{len(s.get('flagged_slices') or [])} of {len(s.get('slices') or [])}"),
        ("flag threshold", _threshold_text(s)),
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


#: ``review.threshold_source`` in words.
_THRESHOLD_SOURCES = {
    "model": "the model's own, validated on its cross-validation",
    "--flag-threshold": "given with --flag-threshold",
    "default": "the default",
}


def _threshold_text(summary: dict[str, Any]) -> str | None:
    """The flag threshold and where it came from (older summaries: the value alone)."""
    value = summary.get("flag_threshold")
    if value is None:
        return None
    review = summary.get("review") or {}
    source = _THRESHOLD_SOURCES.get(review.get("threshold_source", ""))
    return f"{value} ({source})" if source else str(value)


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


def warnings_section(warnings: list[str]) -> Section:
    """``warnings``: one line per warning, or a note that there is none."""
    if not warnings:
        return Section("warnings", "Warnings", '<p class="ok">No warnings.</p>')
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return Section("warnings", "Warnings", f'<ul class="warnings">{items}</ul>')


def _hemisphere(summary: dict[str, Any]) -> Any:
    """The summary's hemisphere, or why there is none."""
    if summary.get("hemisphere") is None and summary.get("hemisphere_note"):
        return f"not given ({summary['hemisphere_note']})"
    return summary.get("hemisphere")


def review_section(files: CaseFiles) -> list[Section]:
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


def volumes_section(
    files: CaseFiles, volumes: CaseVolumes, scores: dict[str, dict[str, float]] | None = None
) -> Section:
    """``volumes``: predicted (and reference) volumes per label and region, with the
    agreement table when a reference was given, and the location and extent."""
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


def features_section(files: CaseFiles) -> Section:
    """``features``: the shape features of ``gliomaseg explain`` with their meaning."""
    title = "Shape features"
    feats = files.features
    if not isinstance(feats, dict):
        return Section(
            "features",
            title,
            omitted=f"no {files.case_id}{FEATURES_STEM}.json or {EXPLANATION_SUFFIX} in "
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


def summary_section(files: CaseFiles) -> Section:
    """``summary``: the plain-language summary of ``gliomaseg explain`` and its evidence."""
    title = "Plain-language summary"
    expl = files.explanation
    if not isinstance(expl, dict) or not expl.get("sentences"):
        return Section(
            "summary",
            title,
            omitted=f"no {files.case_id}{EXPLANATION_SUFFIX} in {files.explain_dir} (run "
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


def inputs_section(files: CaseFiles, volumes: CaseVolumes) -> Section:
    """``inputs``: the input files and the brain intensity percentiles of each modality."""
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
