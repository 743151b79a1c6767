"""Which machine and code a measurement was taken on (every benchmark report starts with it)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@functools.cache
def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` line of ``/proc/cpuinfo`` (read once per field and process:
    :func:`gliomaseg.train.runs.use_bf16` asks on every training step); None where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (``/proc/cpuinfo``); empty where unknown."""
    return frozenset((_cpuinfo_field("flags") or "").split())


def native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX).

    Without it, PyTorch emulates bf16 on the CPU and autocast is many times slower than
    float32 (measured about 15x on an AVX2-only EPYC), so the CPU paths use bf16 only here.
    """
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_info() -> dict[str, Any]:
    """CPU model and count, architecture, OS and memory (GiB); enough to tell machines apart."""
    model = _cpuinfo_field("model name") or platform.processor() or platform.machine()
    try:
        memory_gb: float | None = round(
            os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1
        )
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "arch": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "memory_gb": memory_gb,
        "native_bf16": native_bf16(),
    }


def git_commit(folder: str | Path | None = None, *, short: bool = False) -> str | None:
    """The commit checked out where ``folder`` is, ``+dirty`` when it has changes; None outside git.

    Args:
        folder: Any folder of the checkout (default: this package's source folder, so the
            commit of the code being run).
        short: Abbreviated hash, without the ``+dirty`` mark (model cards).
    """
    where = Path(folder) if folder is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=where
        ).stdout.strip()

    try:
        if short:
            return git("rev-parse", "--short", "HEAD")
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", ".") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 2 decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def report_header(
    benchmark: str,
    *,
    note: str | None = None,
    threads: int | None = None,
    device: str | None = None,
    load_start: Sequence[float] | None = None,
    folder: str | Path | None = None,
) -> dict[str, Any]:
    """The fields every benchmark report starts with (``bench/README.md``).

    ``benchmark``, ``date`` (UTC, ISO 8601 seconds), ``machine`` (:func:`machine_info`),
    ``python``, ``torch`` (when the benchmark imported it), ``git_commit`` (of ``folder``, see
    :func:`git_commit`), then ``threads``, ``device``, ``load_average_1_5_15`` (``start``:
    ``load_start`` as taken before the measurement, ``end``: now) and ``note`` when given.
    """
    header: dict[str, Any] = {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        header["torch"] = torch.__version__
    header["git_commit"] = git_commit(folder)
    if threads is not None:
        header["threads"] = threads
    if device is not None:
        header["device"] = device
    if load_start is not None:
        header["load_average_1_5_15"] = {
            "start": [round(x, 2) for x in load_start],
            "end": load_average(),
        }
    if note is not None:
        header["note"] = note
    return header
