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


def test_git_commit_names_this_checkout_or_none(tmp_path):
    commit = machine.git_commit()
    assert commit is None or len(commit.removesuffix("+dirty")) == 40
    short = machine.git_commit(short=True)
    assert short is None or (commit is not None and commit.startswith(short))
    assert machine.git_commit(tmp_path) is None  # not a git checkout


def test_report_header_fields():
    header = machine.report_header(
        "demo", note="n", threads=2, device="cpu", load_start=(1.234, 2.0, 3.0)
    )
    assert list(header)[:4] == ["benchmark", "date", "machine", "python"]
    assert header["benchmark"] == "demo" and header["date"].endswith("+00:00")
    assert header["torch"] == torch.__version__  # imported by this test module
    assert "git_commit" in header and header["threads"] == 2 and header["device"] == "cpu"
    assert header["load_average_1_5_15"]["start"] == [1.23, 2.0, 3.0]
    assert len(header["load_average_1_5_15"]["end"]) == 3 and header["note"] == "n"
    bare = machine.report_header("demo")
    assert not {"threads", "device", "load_average_1_5_15", "note"} & set(bare)
