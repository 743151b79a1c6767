"""Training a user can live with: progress lines, timed checkpoints, resume that extends or
refuses, a default preset that fits the machine, and every flag's help states its default."""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_TRAIN
from gliomaseg.cli.main import build_parser as _build_parser
from gliomaseg.cli.main import main
from gliomaseg.cli.options import has_default, walk_parsers
from gliomaseg.models.checkpoint import load_checkpoint
from gliomaseg.train import loop as train_module
from gliomaseg.train.config import TrainConfig, choose_preset, data_kind, load_config
from gliomaseg.train.loop import resume_training, slow_epoch_warning, train
from gliomaseg.train.runs import CheckpointClock, ProgressLines, format_duration

#: Two short epochs of the tiny model: 2 x 6 steps, a cosine schedule.
SHORT = {**TINY_TRAIN, "epochs": 2, "steps_per_epoch": 6, "batch_size": 4, "scheduler": "cosine"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _interrupt_after(monkeypatch, steps: int) -> None:
    """Make the next training stop like a kill after ``steps`` optimizer steps."""
    real, calls = train_module._step, []

    def step(*args, **kwargs):
        if len(calls) == steps:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "_step", step)


# --------------------------------------------------------------------------- progress display


def test_progress_lines_without_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="gliomaseg")
    clock = FakeClock()
    bar = ProgressLines(log_every=30.0, clock=clock)
    bar.start(total=20, done=0, steps_per_epoch=10)
    for step in range(13):
        clock.now = 10.0 * (step + 1)  # 10 s per step
        bar.advance(0.5)
    bar.epoch_done(1, {"train_loss": 0.5, "lr": 1e-3})
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    # the first step at once, then every 30 s: steps 1, 4, 7, 10
    assert lines[0] == "epoch 1/2  step 1/10  loss 0.5000  elapsed 10s  ETA 3m10s"
    assert [line.split("  ")[:2] for line in lines[:5]] == [
        ["epoch 1/2", "step 1/10"],
        ["epoch 1/2", "step 4/10"],
        ["epoch 1/2", "step 7/10"],
        ["epoch 1/2", "step 10/10"],
        ["epoch 2/2", "step 3/10"],
    ]
    assert "ETA 1m10s" in lines[4]  # 7 steps left at 10 s each
    assert lines[-1] == "epoch 1: loss 0.5000  lr 1.00e-03"  # no validation: no "val dice nan"


def test_progress_without_terminal_or_when_disabled_logs_epochs_only(caplog):
    caplog.set_level(logging.INFO, logger="gliomaseg")
    bar = ProgressLines(steps=False)
    bar.start(total=4, done=0, steps_per_epoch=2)
    bar.advance(0.1)
    bar.epoch_done(1, {"train_loss": 0.1, "lr": 1e-3, "dice_mean": 0.75})
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 1: loss 0.1000  val dice 0.7500  lr 1.00e-03"
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3599, "59m59s"), (3 * 3600 + 1200, "3h20m")],
)
def test_durations_are_short(seconds, text):
    assert format_duration(seconds) == text
    assert format_duration(float("inf")) == "?"


def test_checkpoint_clock():
    clock = FakeClock()
    every = CheckpointClock(5, clock=clock)
    clock.now = 299.0
    assert not every.due()
    clock.now = 300.0
    assert every.due()
    every.reset()
    assert not every.due()
    never = CheckpointClock(0, clock=clock)
    clock.now = 1e9
    assert not never.due()
    with pytest.raises(ValueError, match=">= 0"):
        CheckpointClock(-1)


# --------------------------------------------------------------------------- timed checkpoints


def test_timed_checkpoint_mid_epoch_then_resume_is_exact(synthetic_cache, tmp_path, monkeypatch):
    config = TrainConfig.from_dict(SHORT)
    train(config, synthetic_cache, tmp_path / "ref", progress=False)
    run = tmp_path / "killed"
    _interrupt_after(monkeypatch, 3)  # in the middle of the first epoch
    with pytest.raises(KeyboardInterrupt):
        train(config, synthetic_cache, run, progress=False, checkpoint_minutes=1e-9)
    state = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    assert (state["epoch"], state["step"]) == (0, 3)  # saved by the clock, not an epoch end
    monkeypatch.undo()
    resume_training(run, progress=False)
    ref, resumed = _weights(tmp_path / "ref"), _weights(run)
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key
    ref_rows, rows = _rows(tmp_path / "ref"), _rows(run)
    assert len(rows) == len(ref_rows) == 2
    for ref_row, row in zip(ref_rows, rows, strict=True):  # the same losses and Dice
        timing = {"seconds": row["seconds"], "cpu_seconds": row["cpu_seconds"]}
        assert {**ref_row, **timing} == row


def test_without_a_timed_checkpoint_a_kill_mid_epoch_leaves_none(
    synthetic_cache, tmp_path, monkeypatch
):
    """...and --resume starts the run again from its config.json, ending where it would."""
    config = TrainConfig.from_dict(SHORT)
    train(config, synthetic_cache, tmp_path / "ref", progress=False)
    run = tmp_path / "killed"
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(config, synthetic_cache, run, progress=False, checkpoint_minutes=0)
    assert not (run / "checkpoints" / "last.pt").exists()
    assert (run / "config.json").exists()
    monkeypatch.undo()
    resume_training(run, progress=False)
    ref, resumed = _weights(tmp_path / "ref"), _weights(run)
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key


def test_resume_of_a_folder_without_a_run_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--resume", str(tmp_path / "empty"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no training run here" in err[0] and "gliomaseg train" in err[0]
    assert main(["train", "--resume", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "no such run folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- resume changes


@pytest.fixture
def short_run(synthetic_cache, tmp_path) -> Path:
    run = tmp_path / "run"
    train(TrainConfig.from_dict(SHORT), synthetic_cache, run, progress=False)
    return run


def test_resume_with_epochs_extends_and_replans_the_cosine_schedule(short_run, capsys):
    before = load_checkpoint(short_run / "checkpoints" / "last.pt")
    assert before["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert main(["train", "--resume", str(short_run), "--epochs", "4", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "extending the run from 2 to 4 epochs" in err
    # cosine over 4 epochs at epoch 2: half the base learning rate
    assert "re-planned over 4 epochs: lr 5.00e-03 at epoch 2" in err
    assert "done: 4 epoch(s)" in out
    after = load_checkpoint(short_run / "checkpoints" / "last.pt")
    assert after["state"]["epoch"] == 4
    assert after["train_config"]["epochs"] == 4
    assert json.loads((short_run / "config.json").read_text())["epochs"] == 4
    rows = _rows(short_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    # epoch 3 ran at the re-planned schedule: 0.01 * (1 + cos(pi * 3 / 4)) / 2 after it
    assert float(rows[2]["lr"]) == pytest.approx(0.01 * (1 - 2**-0.5) / 2, rel=1e-6)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--lr", "0.5"], "--lr (the run has 0.01) cannot change"),
        (["--batch-size", "2", "--seed", "3"], "--batch-size (the run has 4), --seed"),
        (["--fold", "-1"], "--fold (the run has 0)"),
        (["--epochs", "1"], "--epochs 1 is fewer than the 2 epoch(s)"),
        (["--data", "x"], "leave out --data, -o and --cv"),
    ],
)
def test_resume_refuses_what_it_cannot_change_in_one_line(short_run, capsys, flags, says):
    before = (short_run / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", "--resume", str(short_run), *flags, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert (short_run / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_applies_device_and_same_values_with_a_message(short_run, capsys):
    flags = ["--device", "cpu", "--lr", "0.01", "--no-progress"]
    assert main(["train", "--resume", str(short_run), *flags]) == 0
    out, err = capsys.readouterr()
    assert "continuing on --device cpu (the run was started with auto)" in err
    assert "done: 2 epoch(s)" in out


def test_checkpoints_written_before_the_loss_sum_still_resume_and_extend(short_run):
    """Checkpoints of the previous code (no ``epoch_loss_sum`` in the state) keep working."""
    from gliomaseg.models.checkpoint import save_checkpoint

    last = short_run / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    del payload["state"]["epoch_loss_sum"]
    save_checkpoint(last, payload)
    state = resume_training(short_run, changes={"epochs": 3}, progress=False)
    assert state.epoch == 3 and state.global_step == 18


# --------------------------------------------------------------------------- no validation


def test_without_validation_the_last_epoch_is_kept_and_said_so(synthetic_cache, tmp_path, capsys):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({**SHORT, "epochs": 1, "steps_per_epoch": 2}))
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--data", str(synthetic_cache), "-o", str(run)]
    assert main([*args, "--fold", "-1", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "-inf" not in out and "epoch -1" not in out
    assert "no validation" in out and "last epoch is kept" in out
    assert "val dice" not in err
    best = load_checkpoint(run / "checkpoints" / "best.pt")["state_dict"]
    for key, value in _weights(run).items():
        assert torch.equal(best[key], value)


# --------------------------------------------------------------------------- machine defaults


def test_default_preset_fits_the_data_and_the_device(synthetic_cache, tmp_path):
    from gliomaseg.io.writers import write_layout
    from gliomaseg.synthetic.phantoms import make_case

    assert data_kind(synthetic_cache) == "brats"
    assert data_kind(synthetic_cache.parent / "raw") == "brats"
    case = make_case(rng=__import__("numpy").random.default_rng(0), case_id="TCGA_XX_0001")
    write_layout(case, tmp_path / "lgg", layout="lgg-tiff")
    assert data_kind(tmp_path / "lgg") == "lgg"
    name, line = choose_preset(synthetic_cache, "cpu")
    assert name == "brats-cpu" and line.startswith("no --preset given: brats-cpu")
    assert choose_preset(tmp_path / "lgg", "cpu")[0] == "lgg-cpu-128"
    if torch.cuda.is_available():
        assert choose_preset(synthetic_cache, "cuda")[0] == "brats-regions"
    with pytest.raises(FileNotFoundError, match="no such file"):
        data_kind(tmp_path / "nowhere")


def test_train_without_a_preset_says_which_it_chose(synthetic_cache, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(synthetic_cache), "-o", str(run), "--device", "cpu"]
    small = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1", "--fold", "-1"]
    assert main([*args, *small, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "no --preset given: brats-cpu for four-modality BraTS data on cpu" in err
    assert json.loads((run / "config.json").read_text())["name"] == "brats-cpu"


def test_a_gpu_preset_on_a_slow_cpu_gets_one_warning_naming_the_cpu_preset():
    gpu = load_config("brats-regions")
    text = slow_epoch_warning(gpu, seconds_per_step=4.0)  # 250 steps: 16m40s
    assert text is not None and "--preset brats-cpu" in text and "16m40s" in text
    assert slow_epoch_warning(gpu, seconds_per_step=3.0) is None  # 12.5 min: fine
    cpu = load_config("lgg-cpu-128")
    text = slow_epoch_warning(cpu, seconds_per_step=20.0)
    assert text is not None and "lower --steps-per-epoch" in text


# --------------------------------------------------------------------------- help texts


def _bench_parsers(monkeypatch) -> list[argparse.ArgumentParser]:
    """The parser of every bench script, caught when it starts parsing."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench))
    found = []

    class Caught(Exception):
        pass

    def catch(self, *args, **kwargs):
        found.append(self)
        raise Caught

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    for script in sorted(bench.glob("*.py")):
        module = importlib.import_module(script.stem)
        entry = getattr(module, "parse_args", None) or module.main
        monkeypatch.setattr(sys, "argv", [script.name])
        with pytest.raises(Caught):
            entry([]) if entry.__code__.co_argcount else entry()
    return found


def test_every_flag_has_help_that_states_its_default(monkeypatch):
    parsers = list(walk_parsers(_build_parser()))
    assert len(parsers) > 15  # the commands and the autoencoder's subcommands
    parsers += _bench_parsers(monkeypatch)
    missing, silent = [], []
    for parser in parsers:
        formatter = parser.formatter_class(prog=parser.prog)
        for action in parser._actions:
            if isinstance(
                action,
                (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction),
            ):
                continue  # the subcommands each have their own help line
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            if action.help == argparse.SUPPRESS:
                continue  # internal (a bench script's worker flags)
            if not action.help:
                missing.append(name)
                continue
            shown = formatter._expand_help(action)
            if has_default(action) and "default" not in shown:
                silent.append(f"{name} (default {action.default!r})")
            elif has_default(action) and "%(default)" in formatter._get_help_string(action):
                assert str(action.default) in shown, name
    assert not missing, f"options without help: {missing}"
    assert not silent, f"help that does not state the default: {silent}"


def test_terminal_bar_counts_steps_and_prints_epoch_lines(capsys):
    from gliomaseg.cli.training_bar import TrainingBar, training_monitor

    bar = TrainingBar()
    bar.start(total=4, done=1, steps_per_epoch=2)
    for _ in range(3):
        bar.advance(0.25)
    assert bar.done == 4
    assert bar.progress is not None and bar.progress.tasks[0].completed == 4
    bar.epoch_done(2, {"train_loss": 0.25, "lr": 1e-3, "dice_mean": 0.5})
    bar.close()
    assert bar.progress is None
    assert "epoch 2: loss 0.2500  val dice 0.5000" in capsys.readouterr().err
    # Under pytest stderr is not a terminal: log lines, not a bar.
    assert type(training_monitor(log_every=5.0)) is ProgressLines
