"""Which machine a measurement was taken on (printed by every benchmark beside its figures)."""

from __future__ import annotations

import functools
import os
import platform
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
