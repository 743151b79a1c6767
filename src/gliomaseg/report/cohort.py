"""``gliomaseg report-cohort``: one page over the output of ``gliomaseg evaluate``.

Reads ``per_case.csv`` (required) and ``summary.json`` (optional) of an evaluation folder and
shows: the statistics per region, box plots of Dice and HD95 per region with every case as a
point, the worst cases (lowest mean Dice over the regions) linked to their case reports when
those exist, and the per-case table, sortable in the page by a few lines of inline script.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from gliomaseg.io.outputs import COHORT_REPORT, EVALUATION_SUMMARY, PER_CASE_CSV, case_report_path
from gliomaseg.report import figures as figs
from gliomaseg.report.html import (
    Figure,
    Report,
    Section,
    definition_list,
    esc,
    fmt,
    sortable_report,
    table,
    write_page,
)
from gliomaseg.report.style import words

#: How many of the lowest-Dice cases the "worst cases" list shows.
N_WORST = 5
#: Metrics shown per region in the per-case table.
TABLE_METRICS: tuple[str, ...] = ("dice", "hd95_mm", "abs_volume_diff_ml")


def read_per_case(eval_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of ``per_case.csv`` (numbers parsed, ``nan`` -> NaN) and ``summary.json`` ({}).

    Raises:
        ValueError: missing folder or ``per_case.csv``, unreadable files, no ``case_id``
            column; the message names the file and the fix.
    """
    root = Path(eval_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder; pass the output folder of 'gliomaseg evaluate'")
    path = root / PER_CASE_CSV
    if not path.is_file():
        raise ValueError(
            f"{path}: not found; run 'gliomaseg evaluate' into {root} (with the case view)"
        )
    try:
        with path.open(newline="", encoding="utf-8") as f:
            raw = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: unreadable CSV ({err}); re-run 'gliomaseg evaluate'") from None
    if raw and "case_id" not in raw[0]:
        raise ValueError(
            f"{path}: no case_id column; is this a per_case.csv from 'gliomaseg evaluate'?"
        )
    rows = [{k: (v if k == "case_id" else _number(v)) for k, v in r.items()} for r in raw]
    summary: dict[str, Any] = {}
    summary_path = root / EVALUATION_SUMMARY
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{summary_path}: unreadable JSON ({err}); re-run 'gliomaseg evaluate'"
            ) from None
    return rows, summary


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def regions_of(rows: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The regions (WT, TC, ET or ``tumour``) evaluated, labels (``label1``...) left out."""
    names = summary.get("regions") or [
        c.removesuffix("_dice") for c in (rows[0] if rows else {}) if c.endswith("_dice")
    ]
    regions = [n for n in names if not str(n).startswith("label")]
    return regions or list(names)


def _mean_dice(row: dict[str, Any], regions: list[str]) -> float:
    values = [row.get(f"{r}_dice") for r in regions]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def build_cohort_report(
    eval_dir: str | Path,
    *,
    case_reports: str | Path | None = None,
    output: str | Path | None = None,
) -> Report:
    """Render the cohort page of an evaluation folder.

    Args:
        eval_dir: Output folder of ``gliomaseg evaluate``.
        case_reports: Folder of case reports (``<id>_report.html``) to link to.
        output: Where the page will be written (links are made relative to its folder;
            default ``<eval_dir>/cohort.html``).

    Raises:
        ValueError: see :func:`read_per_case`.
    """
    rows, summary = read_per_case(eval_dir)
    regions = regions_of(rows, summary)
    page_dir = (Path(output) if output is not None else Path(eval_dir) / COHORT_REPORT).parent
    links = _report_links(rows, case_reports, page_dir)
    sections = [
        _overview(eval_dir, rows, summary),
        _statistics(summary, regions),
        _distributions(rows, regions),
        _worst(rows, regions, links, case_reports),
        _per_case(rows, regions, links),
    ]
    return sortable_report(
        title="Cohort evaluation",
        subtitle=f"{len(rows)} case(s) from {Path(eval_dir).resolve()}",
        sections=sections,
    )


def write_cohort_report(
    eval_dir: str | Path,
    output: str | Path | None = None,
    *,
    case_reports: str | Path | None = None,
    figures_dir: str | Path | None = None,
) -> Path:
    """Write the cohort page atomically (default ``<eval_dir>/cohort.html``)."""
    out = Path(output) if output is not None else Path(eval_dir) / COHORT_REPORT
    report = build_cohort_report(eval_dir, case_reports=case_reports, output=out)
    return write_page(out, report.html, figures=report.figures, figures_dir=figures_dir)


def _report_links(
    rows: list[dict[str, Any]], case_reports: str | Path | None, page_dir: Path
) -> dict[str, str]:
    """Case id -> relative link (POSIX separators) to its existing case report."""
    if case_reports is None:
        return {}
    folder = Path(case_reports)
    links = {}
    for row in rows:
        target = case_report_path(row["case_id"], folder)
        if target.is_file():
            rel = os.path.relpath(target.resolve(), page_dir.resolve())
            links[str(row["case_id"])] = Path(rel).as_posix()
    return links


def _case_cell(case_id: str, links: dict[str, str]) -> str:
    if case_id in links:
        return f'<a href="{esc(links[case_id])}">{esc(case_id)}</a>'
    return esc(case_id)


def _overview(eval_dir: str | Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> Section:
    policy = summary.get("empty_policy") or {}
    items: list[tuple[str, Any]] = [
        ("evaluation folder", str(Path(eval_dir).resolve())),
        ("cases evaluated", len(rows)),
        ("mode", summary.get("mode")),
        ("empty-mask policy", f"{policy.get('name')}: {policy.get('rule')}" if policy else None),
        ("no prediction", ", ".join(summary.get("missing_predictions") or []) or "none"),
        ("no ground truth", ", ".join(summary.get("missing_references") or []) or "none"),
        (
            "could not be evaluated",
            "; ".join(f"{e.get('case_id')}: {e.get('error')}" for e in summary.get("errors") or [])
            or "none",
        ),
    ]
    return Section("overview", "Overview", definition_list(i for i in items if i[1] is not None))


def _statistics(summary: dict[str, Any], regions: list[str]) -> Section:
    metrics = summary.get("metrics") or {}
    if not metrics:
        return Section(
            "statistics", "Statistics", omitted="no summary.json in the evaluation folder"
        )
    rows = []
    for region in regions:
        m = metrics.get(region) or {}
        d, h = m.get("dice") or {}, m.get("hd95_mm") or {}
        rows.append(
            [
                words(region),
                f"{fmt(d.get('mean'), 3)} ± {fmt(d.get('std'), 3)}",
                f"{fmt(d.get('median'), 3)} [{fmt(d.get('p25'), 3)}, {fmt(d.get('p75'), 3)}]",
                f"{fmt(h.get('median'), 1)} [{fmt(h.get('p25'), 1)}, {fmt(h.get('p75'), 1)}]",
                d.get("n"),
            ]
        )
    headers = ["region", "Dice mean ± SD", "Dice median [IQR]", "HD95 median [IQR] (mm)", "n"]
    return Section(
        "statistics", "Statistics", table(headers, rows, numeric=[False, True, True, True, True])
    )


def _distributions(rows: list[dict[str, Any]], regions: list[str]) -> Section:
    title = "Dice and HD95 per region"
    if not rows:
        return Section("distributions", title, omitted="per_case.csv holds no case")
    dice = {r: [row.get(f"{r}_dice") for row in rows] for r in regions}
    hd = {r: [row.get(f"{r}_hd95_mm") for row in rows] for r in regions}
    dropped = sum(1 for v in hd.values() for x in v if x is None or not math.isfinite(x))
    note = (
        f" {dropped} undefined HD95 value(s) (empty masks under the NaN policy) are not drawn."
        if dropped
        else ""
    )
    figures = [
        Figure(
            "cohort_dice",
            figs.metric_boxplots(dice, ylabel="Dice", title="Dice per region", ylim=(0, 1.02)),
            alt="box plots of Dice per region",
            caption="Dice per case (points) with the median and quartiles (boxes).",
        ),
        Figure(
            "cohort_hd95",
            figs.metric_boxplots(
                hd, ylabel="HD95 (mm)", title="95th-percentile Hausdorff distance"
            ),
            alt="box plots of HD95 per region",
            caption="HD95 per case in mm (lower is better)." + note,
        ),
    ]
    return Section("distributions", title, "".join(f.html() for f in figures), figures=figures)


def _worst(
    rows: list[dict[str, Any]],
    regions: list[str],
    links: dict[str, str],
    case_reports: str | Path | None,
) -> Section:
    title = "Worst cases"
    scored = [(r, _mean_dice(r, regions)) for r in rows]
    scored = sorted((x for x in scored if math.isfinite(x[1])), key=lambda x: x[1])[:N_WORST]
    if not scored:
        return Section("worst", title, omitted="no case has a finite Dice")
    headers = ["case", "mean Dice", *(f"Dice, {words(r)}" for r in regions)]
    body_rows = [
        [
            _case_cell(str(r["case_id"]), links),
            esc(fmt(m, 3)),
            *(esc(fmt(r.get(f"{g}_dice"), 3)) for g in regions),
        ]
        for r, m in scored
    ]
    note = ""
    if case_reports is None:
        note = '<p class="note">Pass --case-reports DIR to link each case to its report.</p>'
    elif not links:
        note = f'<p class="note">No &lt;id&gt;_report.html found in {esc(case_reports)}.</p>'
    numeric = [False] + [True] * (len(headers) - 1)
    return Section("worst", title, table(headers, body_rows, numeric=numeric, raw=True) + note)


def _per_case(rows: list[dict[str, Any]], regions: list[str], links: dict[str, str]) -> Section:
    title = "Per-case results"
    if not rows:
        return Section("per-case", title, omitted="per_case.csv holds no case")
    units = {"dice": "Dice", "hd95_mm": "HD95 (mm)", "abs_volume_diff_ml": "|ΔV| (mL)"}
    headers = ["case", "mean Dice"] + [
        f"{units[m]}, {words(r)}" for r in regions for m in TABLE_METRICS
    ]
    body = []
    for row in rows:
        values = [_mean_dice(row, regions)] + [
            row.get(f"{r}_{m}") for r in regions for m in TABLE_METRICS
        ]
        cells = [f"<td>{_case_cell(str(row['case_id']), links)}</td>"]
        body.append("<tr>" + "".join(cells + [_number_cell(v) for v in values]) + "</tr>")
    num = ' class="num"'
    head = "".join(f"<th{num if i else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    html = (
        '<p class="note">Click a column header to sort.</p><div class="scroll">'
        f'<table class="sortable" id="per-case-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    return Section("per-case", title, html)


def _number_cell(value: float | None) -> str:
    """A numeric ``<td>`` whose ``data-sort`` holds the exact value; blanks and NaN sort last."""
    if value is None or not math.isfinite(value):
        return '<td class="num" data-sort="">–</td>'
    return f'<td class="num" data-sort="{value!r}">{esc(fmt(value, 3))}</td>'
