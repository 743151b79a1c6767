"""Self-contained HTML reports: one per case, one per cohort evaluation, one per training run.

* :func:`write_case_report` (``gliomaseg report``) -- a segmented case: the modalities at the
  flagged slices with the masks outlined, the probability map, the per-slice tumour
  probability, volumes, shape features, the plain-language summary, the 3D render, warnings;
* :func:`write_cohort_report` (``gliomaseg report-cohort``) -- ``gliomaseg evaluate`` output:
  Dice/HD95 distributions per region, worst cases linked to their reports, a sortable table;
* :func:`write_training_report` (``gliomaseg report-training``) -- a run folder: curves, best
  epoch, configuration.

Pages embed every image as a base64 PNG data URI with inline style (and, for the tables, a few
lines of inline script), so one file opens from disk with no network. ``build_*`` functions
return the page without writing it. The submodules load lazily: importing this package (or
:mod:`gliomaseg.cli.report`, the CLI glue) imports neither numpy nor matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gliomaseg.report.case import CASE_SECTIONS, build_case_report, write_case_report
    from gliomaseg.report.cohort import build_cohort_report, write_cohort_report
    from gliomaseg.report.html import Report
    from gliomaseg.report.training import build_training_report, write_training_report

_LAZY: dict[str, str] = {
    "CASE_SECTIONS": "gliomaseg.report.case",
    "Report": "gliomaseg.report.html",
    "build_case_report": "gliomaseg.report.case",
    "write_case_report": "gliomaseg.report.case",
    "build_cohort_report": "gliomaseg.report.cohort",
    "write_cohort_report": "gliomaseg.report.cohort",
    "build_training_report": "gliomaseg.report.training",
    "write_training_report": "gliomaseg.report.training",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gliomaseg.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "CASE_SECTIONS",
    "Report",
    "build_case_report",
    "build_cohort_report",
    "build_training_report",
    "write_case_report",
    "write_cohort_report",
    "write_training_report",
]
