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
from pathlib import Path
from typing import Any

from gliomaseg.io.outputs import case_report_path
from gliomaseg.report.case_data import find_case_files, load_volumes, summary_ids
from gliomaseg.report.case_images import (
    probability_section,
    render_section,
    slice_chart_section,
    slices_section,
)
from gliomaseg.report.case_tables import (
    features_section,
    inputs_section,
    overview_section,
    review_section,
    summary_section,
    volumes_section,
    warnings_section,
)
from gliomaseg.report.checks import case_warnings, reference_scores
from gliomaseg.report.framing import choose_slices, crop_in_plane
from gliomaseg.report.html import Report, all_figures, render_page, write_page
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
        overview_section(files, volumes),
        warnings_section(warnings),
        viewer_section(files, volumes, enabled=viewer),
        slices_section(files, shown, slices),
        probability_section(files, shown, slices),
        slice_chart_section(files, slices),
        *review_section(files),
        volumes_section(files, volumes, scores),
        features_section(files),
        summary_section(files),
        render_section(files),
        inputs_section(files, volumes),
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
    out = Path(output) if output is not None else case_report_path(cid, case_dir)
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
