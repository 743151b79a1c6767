"""Where a model's cross-validation errors sit: one ``bench/accuracy.py`` report split by group.

Groups of patients, each with its count and per-region mean / median / worst 3D Dice and mean
HD95, with and without the report's postprocessing:

* ``--by source``: the acquiring collection the folds were stratified by
  (:func:`gliomaseg.prepare.workflow.stratum_of`: ``CBICA``, ``TCIA``, ``2013``, ``2021`` for
  BraTS; the TCGA institution for LGG);
* ``--by grade``: BraTS tumour grade from the BraTS 2020 training id (``BraTS20_Training_001``
  to ``259`` are high-grade, ``260`` to ``369`` lower-grade, as the release's HGG/LGG folders),
  read from the case id itself or through ``--ids`` (a ``cases.json`` mapping older names to
  ``brats2020_id``, e.g. ``../shared/data/brats_more/cases.json``); patients with neither
  (BraTS 2021 names carry no grade) are ``unknown``.

Prints one JSON object::

    .venv/bin/python bench/subgroups.py REPORT.json --by grade --ids ../shared/data/brats_more/cases.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: BraTS 2020 training ids at or above this are the release's lower-grade gliomas (LGG folder).
FIRST_LGG_ID = 260
_BRATS20 = re.compile(r"BraTS20_Training_(\d{3})$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path, help="a bench/accuracy.py report (JSON)")
    parser.add_argument(
        "--by",
        choices=("source", "grade"),
        default="source",
        help="how to group the patients (default: %(default)s)",
    )
    parser.add_argument(
        "--ids",
        type=Path,
        default=None,
        help="cases.json mapping case ids to brats2020_id, for --by grade (default: none; "
        "only BraTS20_Training ids are graded then)",
    )
    return parser.parse_args(argv)


def grade_of(case_id: str, brats2020_ids: dict[str, str]) -> str:
    """``HGG``, ``LGG`` or ``unknown`` from the BraTS 2020 training id of ``case_id``."""
    m = _BRATS20.match(brats2020_ids.get(case_id, case_id))
    if m is None:
        return "unknown"
    return "LGG" if int(m.group(1)) >= FIRST_LGG_ID else "HGG"


def _region_stats(rows: list[dict[str, Any]], region: str) -> dict[str, float]:
    dice = [float(r[region]["dice"]) for r in rows]
    hd95 = [float(r[region]["hd95_mm"]) for r in rows]
    return {
        "dice_mean": round(statistics.fmean(dice), 4),
        "dice_median": round(statistics.median(dice), 4),
        "dice_worst": round(min(dice), 4),
        "hd95_mm_mean": round(statistics.fmean(hd95), 2),
    }


def split(report: dict[str, Any], group_of: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Per group: patients, and per-region statistics with and without postprocessing.

    Raises:
        KeyError, TypeError, ValueError: not an accuracy report with per-case rows.
    """
    results = report["results"]
    regions = list(results["cross_validation"])
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in results["per_case"]:
        groups.setdefault(group_of(row), []).append(row)
    if not groups:
        raise ValueError("the report holds no patients")
    out = {}
    for name in sorted(groups):
        rows = groups[name]
        out[name] = {
            "patients": sorted(r["case_id"] for r in rows),
            "n": len(rows),
            **{
                label: {r: _region_stats([row[key] for row in rows], r) for r in regions}
                for label, key in (
                    ("postprocessed", "metrics"),
                    ("without_postprocessing", "metrics_without_postprocessing"),
                )
            },
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from gliomaseg.prepare.workflow import stratum_of

    args = parse_args(argv)
    try:
        report = json.loads(args.report.read_text())
        ids: dict[str, str] = {}
        if args.ids is not None:
            cases = json.loads(args.ids.read_text())["cases"]
            ids = {name: str(entry["brats2020_id"]) for name, entry in cases.items()}

        def group_of(row: dict[str, Any]) -> str:
            if args.by == "grade":
                return grade_of(row["case_id"], ids)
            return stratum_of(row.get("patient") or row["case_id"]) or "other"

        groups = split(report, group_of)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(
            f"{args.report}: cannot split ({type(err).__name__}: {err}); pass a bench/accuracy.py "
            "report (and for --ids a cases.json with brats2020_id entries)",
            file=sys.stderr,
        )
        return 2
    print(
        json.dumps(
            {
                "benchmark": "subgroups",
                "report": str(args.report),
                "report_date": report.get("date"),
                "model": report["results"].get("model"),
                "by": args.by,
                "ids": str(args.ids) if args.ids else None,
                "groups": groups,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
