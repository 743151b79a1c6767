"""Agreement of retrieval with the rules, and safety, over every labelled real case.

Runs the feature + summary path of ``gliomaseg explain`` (:func:`gliomaseg.explain.workflow.describe_case`)
with the packaged all-MiniLM-L6-v2 model on every labelled case under the real-data folder
(default ``../shared/data`` beside the checkout) and prints one JSON object:

* ``n_cases`` (and per data folder), the summaries made (whole-case and per-slice);
* the agreement rate between each aspect's rule category and the *unrestricted* top-1
  retrieved sentence, overall, per aspect and per summary scope. This checks the sentence
  library, not the reported text: the reported sentence always carries the rule category;
* ``safety_violations``: summaries breaking a safety rule (``check_summary``); must be 0;
* the date and the machine, in the fields the other benchmarks use (``bench/README.md``):
  ``benchmark``, ``date``, ``machine``, ``python``, ``torch``, ``threads``,
  ``load_average_1_5_15``, ``note``, ``settings``, ``results``.

Label-only NIfTI files (algorithm outputs, templates) and unlabelled cases are skipped and
counted. Usage::

    .venv/bin/python bench/summary_agreement.py [DATA_DIR] [--note TEXT] > agreement.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rates(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement over sentence items: overall and per aspect."""
    per: dict[str, list[bool]] = {}
    for item in items:
        per.setdefault(item["aspect"], []).append(bool(item["agreement"]))
    flags = [f for values in per.values() for f in values]
    return {
        "n": len(flags),
        "rate": sum(flags) / len(flags) if flags else None,
        "per_aspect": {
            aspect: {"n": len(v), "agree": sum(v), "rate": sum(v) / len(v)}
            for aspect, v in per.items()
        },
    }


def _dataset(path: Path, data: Path) -> str:
    try:
        return path.relative_to(data).parts[0]
    except (ValueError, IndexError):
        return path.name


def run(data: Path, *, note: str = "") -> dict[str, Any]:
    """Describe every labelled case under ``data``; returns the report."""
    # Long: one loop over the cases, then the report dict written out field by field.
    import torch

    from gliomaseg import __version__
    from gliomaseg.core.machine import report_header
    from gliomaseg.explain.describe import describe_case
    from gliomaseg.explain.embedder import default_embedder
    from gliomaseg.explain.sentences import load_library
    from gliomaseg.explain.summary import check_summary
    from gliomaseg.io.layouts import find_cases, read_case

    start, load_start = time.perf_counter(), os.getloadavg()
    library, embedder = load_library(), default_embedder()
    items: dict[str, list[dict[str, Any]]] = {"case": [], "slice": []}
    counts: Counter[str] = Counter()
    per_folder: Counter[str] = Counter()
    failures, violations = [], []
    for ref in find_cases(data):
        if ref.layout == "nifti-file":  # a lone label map or image, not a case
            counts["skipped_single_files"] += 1
            continue
        try:
            case = read_case(ref)
        except (ValueError, FileNotFoundError, OSError) as err:
            failures.append({"path": str(ref.path), "error": " ".join(str(err).split())})
            continue
        if case.label is None:
            counts["skipped_unlabelled"] += 1
            continue
        try:
            desc = describe_case(case, library=library, embedder=embedder)
        except RuntimeError as err:  # a safety rule would have been broken
            violations.append({"case_id": case.case_id, "error": str(err)})
            continue
        print(f"{case.case_id}: {len(desc.slice_summaries)} tumour slice(s)", file=sys.stderr)
        per_folder[_dataset(ref.path, data)] += 1
        summaries = desc.summaries if desc.scope == "case" else desc.slice_summaries
        for summary in summaries:
            try:
                check_summary(summary)
            except RuntimeError as err:
                violations.append({"case_id": case.case_id, "error": str(err)})
            counts[f"{summary['kind']}_summaries"] += 1
            items[summary["kind"]] += summary["sentences"]
    return {
        **report_header(
            "summary_agreement",
            note=note,
            threads=torch.get_num_threads(),
            device="cpu",
            load_start=load_start,
        ),
        "gliomaseg": __version__,
        "settings": {"data": str(data), "embedder": embedder.name, "library": library.source},
        "results": {
            "n_cases": sum(per_folder.values()),
            "cases_per_folder": dict(per_folder),
            "n_case_summaries": counts["case_summaries"],
            "n_slice_summaries": counts["slice_summaries"],
            "skipped_single_files": counts["skipped_single_files"],
            "skipped_unlabelled": counts["skipped_unlabelled"],
            "failures": failures,
            "agreement": {
                "overall": _rates(items["case"] + items["slice"]),
                "case_summaries": _rates(items["case"]),
                "slice_summaries": _rates(items["slice"]),
            },
            "safety_violations": len(violations),
            "violations": violations,
            "seconds": round(time.perf_counter() - start, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    from gliomaseg.cli.main import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("data", type=Path, nargs="?", default=DEFAULT_DATA, help="real-data folder")
    parser.add_argument("--note", default="", help="a remark stored in the JSON")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(
            f"summary_agreement: {args.data} is not a folder; pass the real-data folder",
            file=sys.stderr,
        )
        return 2
    report = run(args.data, note=args.note)
    print(json.dumps(report, indent=2))
    return 0 if report["results"]["safety_violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
