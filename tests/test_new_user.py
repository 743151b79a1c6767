"""Small things a new user meets: segment's progress moves through each case's stages, a
training run folder is a model, the sentence model loads without noise."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.cli import segment as segment_cmd
from gliomaseg.cli.main import main
from gliomaseg.cli.segment import StageProgress
from gliomaseg.core.errors import InputError
from gliomaseg.io.writers import write_layout
from gliomaseg.segment.models import run_checkpoint
from gliomaseg.segment.plan import DONE, FAILED, STAGES
from gliomaseg.synthetic.phantoms import make_case


def _case(tmp_path: Path, case_id: str = "Case_001") -> Path:
    synth = make_case(
        rng=np.random.default_rng(5),
        case_id=case_id,
        template="phantom",
        shape=(32, 32, 20),
        tumour_radius_mm=8.0,
    )
    return write_layout(synth, tmp_path / "in", layout="brats2020")


def test_segment_reports_every_stage_of_every_case(tiny_run, tmp_path, monkeypatch):
    seen: list[tuple[int, str]] = []

    class Recording(StageProgress):
        def stage(self, name: str) -> None:
            seen.append((self.index, name))
            super().stage(name)

    monkeypatch.setattr(segment_cmd, "StageProgress", Recording)
    _case(tmp_path, "Case_001")
    _case(tmp_path, "Case_002")
    model = tiny_run / "checkpoints" / "best.pt"
    args = ["segment", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model)]
    assert main(args) == 0
    assert seen == [(i, s) for i in range(2) for s in STAGES]


def test_stage_progress_moves_within_a_case():
    bar = StageProgress(1, enabled=True)
    with bar:
        bar.start_case("Case_001")
        done = []
        for name in STAGES:
            bar.stage(name)
            done.append(bar.progress.tasks[0].completed)
        bar.end_case(DONE)
        assert done == [0, 1, 2, 3]  # a single case does not sit at 0% through inference
        assert bar.progress.tasks[0].completed == bar.progress.tasks[0].total == 4
        assert bar.progress.tasks[0].fields["where"] == "Case_001: done"


def test_stage_progress_says_failed_for_a_failed_case():
    bar = StageProgress(2, enabled=True)
    with bar:
        bar(0, 2, "Case_001", STAGES[0])
        bar(0, 2, "Case_001", FAILED)
        assert bar.progress.tasks[0].fields["where"] == "Case_001: failed"
        assert bar.progress.tasks[0].completed == len(STAGES)  # the bar still moves on


def test_a_training_run_folder_is_a_model(tiny_run, tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO, logger="gliomaseg")
    assert run_checkpoint(tiny_run) == tiny_run / "checkpoints" / "best.pt"
    assert "using" in caplog.text and "best validation epoch" in caplog.text
    assert run_checkpoint(tiny_run / "checkpoints") == tiny_run / "checkpoints" / "best.pt"
    only_last = tmp_path / "only_last"
    (only_last / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_run / "checkpoints" / "last.pt", only_last / "checkpoints" / "last.pt")
    assert run_checkpoint(only_last) == only_last / "checkpoints" / "last.pt"
    _case(tmp_path)
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_run)]) == 0
    assert (out / "Case_001_seg.nii.gz").exists()
    assert "is a training run folder: using" in capsys.readouterr().err


def test_a_folder_without_a_model_is_explained_in_one_line(tmp_path, capsys):
    cv = tmp_path / "cv"
    (cv / "fold0" / "checkpoints").mkdir(parents=True)
    (cv / "fold0" / "checkpoints" / "last.pt").write_bytes(b"x")
    with pytest.raises(InputError, match="without its ensemble yet"):
        run_checkpoint(cv)
    (tmp_path / "empty").mkdir()
    _case(tmp_path)
    args = ["segment", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    assert main([*args, "--model", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a folder without a model" in err[0]
    assert "corrupt or partial" not in err[0]


@pytest.mark.slow
def test_the_sentence_model_loads_without_noise():
    """Loading all-MiniLM-L6-v2 in a fresh process prints nothing (no progress bars, no
    notices from transformers): only what gliomaseg itself says reaches the terminal."""
    code = (
        "from gliomaseg.explain.embedder import MiniLMEmbedder\n"
        "assert MiniLMEmbedder().embed(['a small tumour']).shape == (1, 384)\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "" and result.stderr == ""
