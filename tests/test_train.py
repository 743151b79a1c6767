"""Training: learns on synthetic data, resumes exactly after a kill, presets run, DDP agrees."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_TRAIN
from gliomaseg.cli.main import main
from gliomaseg.models.checkpoint import load_checkpoint
from gliomaseg.train.config import TrainConfig, list_presets, load_config
from gliomaseg.train.loop import train

SMALL = TINY_TRAIN


@pytest.fixture
def cache(synthetic_cache) -> Path:
    return synthetic_cache


def _weights(run: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / name)["state_dict"]


def test_training_learns_synthetic_tumours(tiny_run):
    """What 60 steps learn on every seed and in float32 and bf16: the whole tumour.

    Over seeds 0-2, with and without bf16 autocast, the best validation WT Dice was
    0.918-0.979 and the last epoch's training loss 0.38-0.47 of the first. The mean over
    WT/TC/ET (``best_metric``, which this test used to require above 0.8) is not learnt that
    reliably: seed 1 never predicts TC or ET in 3 epochs (0.32), and seed 0 under bf16 went
    0.47, 0.91, 0.73. So it is only checked to be what ``metrics.csv`` says.
    """
    with (tiny_run / "metrics.csv").open() as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"dice_WT", "slice_dice_WT", "dice_TC", "dice_ET", "dice_mean"} <= set(rows[0])
    best_wt = max(r["dice_WT"] for r in rows)
    assert best_wt > 0.8, rows
    assert rows[-1]["train_loss"] < 0.65 * rows[0]["train_loss"], rows
    state = load_checkpoint(tiny_run / "checkpoints" / "last.pt")["state"]
    assert state["epoch"] == 3
    best = max(rows, key=lambda r: r["dice_mean"])
    assert state["best_metric"] == pytest.approx(best["dice_mean"], abs=1e-6)
    assert state["best_epoch"] == best["epoch"]
    assert (tiny_run / "checkpoints" / "best.pt").exists()
    assert (tiny_run / "curves.png").stat().st_size > 1000
    saved = json.loads((tiny_run / "config.json").read_text())
    assert saved["model"]["features"] == [8, 16, 32]


def _train_cmd(cache: Path, run: Path, config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gliomaseg",
        "train",
        "--config",
        str(config),
        "--data",
        str(cache),
        "-o",
        str(run),
        "--no-progress",
    ]


def test_resume_after_kill_gives_identical_weights(cache, tmp_path):
    cfg = {
        **SMALL,
        "epochs": 2,
        "steps_per_epoch": 8,
        "batch_size": 4,
        "save_every_steps": 1,
        "scheduler": "plateau",
    }
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg))
    # Uninterrupted reference run.
    assert (
        main(
            [
                "train",
                "--config",
                str(config_file),
                "--data",
                str(cache),
                "-o",
                str(tmp_path / "ref"),
                "--no-progress",
            ]
        )
        == 0
    )
    # Same run, killed (SIGKILL) once it has written a mid-epoch checkpoint, then resumed.
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _train_cmd(cache, run, config_file),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    last = run / "checkpoints" / "last.pt"
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and load_checkpoint(last)["state"]["global_step"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(last)["state"]["global_step"]
    assert killed_at < 16, "the run finished before it could be killed"
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    ref, resumed = _weights(tmp_path / "ref"), _weights(run)
    assert ref.keys() == resumed.keys()
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key
    assert (
        load_checkpoint(last)["optimizer"]["state"].keys()
        == load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")["optimizer"][
            "state"
        ].keys()
    )


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_builds_and_runs_two_steps(cache, tmp_path, preset):
    config = load_config(preset)
    small = "patch_size", [32, 64, 64] if config.spatial_dims == 3 else [64, 64]
    data = {
        **config.to_dict(),
        "epochs": 1,
        "steps_per_epoch": 2,
        "batch_size": 1,
        "fold": -1,
        small[0]: small[1],
    }
    state = train(TrainConfig.from_dict(data), cache, tmp_path / preset, progress=False)
    assert state.global_step == 2
    assert (tmp_path / preset / "checkpoints" / "last.pt").exists()


def test_corrupt_or_partial_checkpoint_gives_a_clear_error(cache, tmp_path, capsys):
    config = TrainConfig.from_dict({**SMALL, "epochs": 1, "steps_per_epoch": 2, "fold": -1})
    run = tmp_path / "run"
    train(config, cache, run, progress=False)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    with pytest.raises(ValueError, match="corrupt or partial"):
        load_checkpoint(last)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.pt" in err[0]


def test_unknown_options_and_missing_modalities_are_reported(cache, tmp_path):
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({**SMALL, "learning_rate": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        load_config("unet-gigantic")
    config = TrainConfig.from_dict({**SMALL, "modalities": ["flair", "adc"]})
    with pytest.raises(ValueError, match="missing modality adc"):
        train(config, cache, tmp_path / "run", progress=False)


#: Runs ``gliomaseg train`` in each torchrun process; after training, every rank writes a
#: digest of its own final weights to the folder named first on its command line.
DDP_WORKER = """
import hashlib, sys
from pathlib import Path

from gliomaseg.cli.main import main
from gliomaseg.train import loop

real_fit = loop.fit


def fit(run, **options):
    state = real_fit(run, **options)
    digest = hashlib.sha256()
    for name, tensor in sorted(run.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    (Path(sys.argv[1]) / f"weights_rank{run.rank}.sha256").write_text(digest.hexdigest())
    return state


loop.fit = fit
sys.exit(main(sys.argv[2:]))
"""


def _digest(state_dict: dict) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_ddp_two_processes_end_with_identical_weights(cache, tmp_path):
    cfg = {**SMALL, "epochs": 1, "steps_per_epoch": 3, "batch_size": 2, "fold": -1}
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg))
    worker = tmp_path / "ddp_worker.py"
    worker.write_text(DDP_WORKER)
    digests_dir = tmp_path / "digests"
    digests_dir.mkdir()
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(worker),
        str(digests_dir),
        "train",
        "--config",
        str(config_file),
        "--data",
        str(cache),
        "-o",
        str(run),
        "--no-progress",
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    digests = [(digests_dir / f"weights_rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    # ... and they are the weights rank 0 saved; no rank writes anything else into the run.
    assert _digest(load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]) == digests[0]
    assert not list(run.glob("weights_rank*"))
