"""Peak memory and time of ``gliomaseg prepare`` on one or more datasets; prints JSON.

Each dataset is prepared in a fresh subprocess (so peak RSS is that run's own) into a
temporary cache that is deleted afterwards.

    python bench/prepare_memory.py ../shared/data/lgg/kaggle_3m_sample ../shared/data/brats
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gliomaseg.core.machine import report_header


def run_one(data: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gliomaseg",
                "prepare",
                str(data),
                "-o",
                str(Path(tmp) / "cache"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        return {"data": str(data), "error": proc.stderr.strip().splitlines()[-1:]}
    summary = json.loads(proc.stdout)
    return {
        "data": str(data),
        "cases": summary["cases_in_cache"],
        "slices": summary["slices_in_cache"],
        "failed": len(summary["failed"]),
        "wall_s": round(wall, 1),
        "peak_rss_mb": summary["peak_rss_mb"],
    }


def main() -> None:
    from gliomaseg.cli.main import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("data", nargs="+", type=Path, help="dataset folders to prepare")
    args = parser.parse_args()
    results = [run_one(d) for d in args.data]
    print(
        json.dumps(
            {**report_header("prepare_memory"), "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
