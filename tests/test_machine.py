"""Run-time CPU detection: bf16 autocast only where the CPU computes bf16 natively."""

from __future__ import annotations

import pytest
import torch

from gliomaseg.core import machine
from gliomaseg.train import runs


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"avx2", "fma"}, False),
        ({"avx2", "avx512f", "avx512_bf16"}, True),
        ({"avx2", "amx_bf16", "amx_tile"}, True),
        (set(), False),
    ],
)
def test_bf16_only_on_cpus_that_have_it(monkeypatch, flags, native):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(runs, "native_bf16", machine.native_bf16)
    assert machine.native_bf16() is native
    assert runs.use_bf16(torch.device("cpu"), True) is native
    assert runs.use_bf16(torch.device("cpu"), False) is False  # --no-amp always wins
    assert runs.use_bf16(torch.device("cuda"), True) is True


def test_machine_info_says_whether_bf16_is_native():
    info = machine.machine_info()
    assert info["native_bf16"] == machine.native_bf16()
    assert isinstance(machine.cpu_flags(), frozenset)
