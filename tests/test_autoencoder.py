"""Mask autoencoder: shapes, mask resampling, learning, exact resume, CLI train/embed."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gliomaseg.cli import autoencoder as ae_cli
from gliomaseg.explain.autoencoder import training as ae_training
from gliomaseg.explain.autoencoder.config import AutoencoderConfig
from gliomaseg.explain.autoencoder.data import MaskSet, fit_mask, load_masks, split_patients
from gliomaseg.explain.autoencoder.embed import latent_correlations, pca
from gliomaseg.explain.autoencoder.model import (
    build_autoencoder,
    dice_per_mask,
    encode,
    load_autoencoder,
    reconstruct,
)
from gliomaseg.explain.autoencoder.training import train_autoencoder
from gliomaseg.io.writers import write_layout
from gliomaseg.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from gliomaseg.prepare.workflow import PrepareConfig, prepare_dataset
from gliomaseg.synthetic.phantoms import make_case

TINY = {
    "size": 16,
    "latent": 8,
    "base_channels": 4,
    "epochs": 2,
    "steps_per_epoch": 4,
    "batch_size": 4,
    "val_fraction": 0.0,
    "min_pixels": 1,
    "device": "cpu",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One CPU thread: fast on a shared machine, and the same arithmetic on every run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size, size) masks: 1-3 overlapping rotated ellipses, radius 2 to 0.4 * size.

    Centres move +-4 pixels around the middle (tumours of a brain-centred grid); sizes,
    elongations, orientations and lobes vary freely. The sizes spread over a 40-fold range
    of area so that size, not position or shape, carries most of the masks' variance: with
    radius 3 to 0.3 * size the first two principal components had similar variance and which
    one followed size changed with the seed (|rho| of PC1 0.73 to 0.95 over seeds 0-3).
    """
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    out = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        centre = (size - 1) / 2 + rng.uniform(-4, 4, 2)
        radius = rng.uniform(2, 0.4 * size)
        for lobe in range(rng.integers(1, 4)):
            a = radius * rng.uniform(0.6, 1.0)
            b = a * rng.uniform(0.6, 1.0)
            t = rng.uniform(0, np.pi)
            cx, cy = centre + (rng.uniform(-0.6, 0.6, 2) * radius if lobe else 0.0)
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            out[i] |= ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.uint8)
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    oa = load_checkpoint(a / "checkpoints" / "last.pt")["optimizer"]["state"]
    ob = load_checkpoint(b / "checkpoints" / "last.pt")["optimizer"]["state"]
    for key in oa:
        assert torch.equal(oa[key]["exp_avg"], ob[key]["exp_avg"])


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize(("size", "latent"), [(16, 8), (32, 64), (64, 64), (128, 128)])
def test_network_shapes(size: int, latent: int) -> None:
    config = AutoencoderConfig(size=size, latent=latent)
    model = build_autoencoder(config)
    x = torch.zeros(3, 1, size, size)
    z = model["encoder"](x)
    assert z.shape == (3, latent)
    assert model["decoder"](z).shape == (3, 1, size, size)
    assert encode(model, np.zeros((0, size, size))).shape == (0, latent)


def test_config_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="power of two"):
        AutoencoderConfig(size=48)
    with pytest.raises(ValueError, match="latent"):
        AutoencoderConfig(latent=1)
    with pytest.raises(ValueError, match="unknown autoencoder option"):
        AutoencoderConfig.from_dict({"latent_size": 64})


def test_fit_mask_keeps_physical_size_and_position() -> None:
    """A 20 mm disc gives the same grid mask from 1 mm and from 0.5 x 1 mm pixels."""

    def disc(shape: tuple[int, int], spacing: tuple[float, float]) -> np.ndarray:
        x = (np.arange(shape[0]) - (shape[0] - 1) / 2) * spacing[0] - 30.0
        y = (np.arange(shape[1]) - (shape[1] - 1) / 2) * spacing[1]
        return (x[:, None] ** 2 + y[None, :] ** 2 <= 20.0**2).astype(np.uint8)

    a = fit_mask(disc((240, 240), (1.0, 1.0)), spacing=(1.0, 1.0), size=64, pixel_mm=3.75)
    b = fit_mask(disc((480, 240), (0.5, 1.0)), spacing=(0.5, 1.0), size=64, pixel_mm=3.75)
    assert a.shape == (64, 64)
    assert a.sum() * 3.75**2 == pytest.approx(np.pi * 20**2, rel=0.1)
    assert dice_per_mask(a[None], b[None])[0] > 0.95
    centre = np.argwhere(a).mean(axis=0)
    assert centre[0] == pytest.approx(31.5 + 30 / 3.75, abs=0.5)  # 30 mm towards high x
    assert centre[1] == pytest.approx(31.5, abs=0.5)


def test_masks_round_trip_and_patient_split(tmp_path: Path) -> None:
    masks = MaskSet.from_arrays(blobs(7, 16, np.random.default_rng(0)))
    masks.save(tmp_path / "m.npz")
    back = MaskSet.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.masks, masks.masks)
    np.testing.assert_array_equal(back.case_ids, masks.case_ids)
    train, val = split_patients(np.array(["a", "a", "b", "c", "d", "e", "e"]), 0.4, seed=0)
    assert len(train) + len(val) == 7 and len(val) >= 2
    patients = np.array(["a", "a", "b", "c", "d", "e", "e"])
    assert not set(patients[train]) & set(patients[val])
    assert len(split_patients(patients[:4], 0.5, seed=0)[1]) == 0  # < 5 patients: no split


# --------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """300 steps on 512 synthetic 32 x 32 masks; returns the run and 128 held-out masks."""
    rng = np.random.default_rng(0)
    train, held_out = blobs(512, 32, rng), blobs(128, 32, rng)
    config = AutoencoderConfig(
        size=32,
        latent=32,
        epochs=1,
        steps_per_epoch=300,
        batch_size=32,
        lr=3e-3,
        val_fraction=0.0,
        min_pixels=1,
        device="cpu",
    )
    run = tmp_path_factory.mktemp("ae") / "run"
    train_autoencoder(config, MaskSet.from_arrays(train), run, progress=False)
    return run, held_out


def test_reconstructs_held_out_masks(trained: tuple[Path, np.ndarray]) -> None:
    """Mean Dice 0.915-0.931 over training seeds 0-3 (float32; the autoencoder has no bf16
    path); 0.85 leaves a margin of 0.065 for other CPUs' arithmetic. The reconstructions must
    also be of *their* mask: against a neighbour's mask the Dice falls by more than 0.3."""
    run, held_out = trained
    model, config = load_autoencoder(run)
    assert config.size == 32
    recon = reconstruct(model, held_out)
    dice = dice_per_mask(recon, held_out).mean()
    mismatched = dice_per_mask(recon, np.roll(held_out, 1, axis=0)).mean()
    assert dice > 0.85, dice
    assert dice - mismatched > 0.3, (dice, mismatched)


def test_first_principal_component_follows_tumour_size(
    trained: tuple[Path, np.ndarray],
) -> None:
    """|rho| of PC1 with area 0.975-0.985 over training seeds 0-3; 0.9 leaves 0.075 margin,
    many times the seed-to-seed spread. A shuffled area gives |rho| below 0.2."""
    run, held_out = trained
    model, _ = load_autoencoder(run)
    masks = MaskSet.from_arrays(held_out)
    scores, ratio = pca(encode(model, held_out), 3)
    assert np.all(np.diff(ratio) <= 0)
    rho = latent_correlations(scores, masks.area_mm2, masks.irregularity)["PC1"]["area_mm2"]["rho"]
    shuffled_area = np.random.default_rng(0).permutation(masks.area_mm2)
    baseline = latent_correlations(scores, shuffled_area, masks.irregularity)["PC1"]["area_mm2"]
    assert rho is not None and abs(rho) > 0.9, rho
    assert baseline["rho"] is not None and abs(baseline["rho"]) < 0.2, baseline


# --------------------------------------------------------------------------- resume


def test_resume_extending_epochs_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    masks = MaskSet.from_arrays(blobs(40, 16, np.random.default_rng(1)))
    train_autoencoder(AutoencoderConfig(**TINY), masks, tmp_path / "ref", progress=False)
    short = AutoencoderConfig(**{**TINY, "epochs": 1})
    train_autoencoder(short, masks, tmp_path / "run", progress=False)
    state = train_autoencoder(None, None, tmp_path / "run", resume=True, epochs=2, progress=False)
    assert (state.epoch, state.global_step) == (2, 8)
    _assert_same_run(tmp_path / "ref", tmp_path / "run")
    with (tmp_path / "run" / "metrics.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 2


def test_resume_after_a_crash_mid_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run dies inside epoch 2 after a mid-epoch checkpoint; resuming ends identically."""
    cfg = AutoencoderConfig(**{**TINY, "save_every_steps": 1, "val_fraction": 0.3})
    masks = MaskSet.from_arrays(blobs(40, 16, np.random.default_rng(2)))
    train_autoencoder(cfg, masks, tmp_path / "ref", progress=False)
    step, calls = ae_training._Loop.step, {"n": 0}

    def dying_step(self: ae_training._Loop, *args: object) -> float:
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 2, step 3: last.pt holds epoch 1 + 2 steps
            raise KeyboardInterrupt
        return step(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ae_training._Loop, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(cfg, masks, tmp_path / "run", progress=False)
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]
    assert (saved["epoch"], saved["step"]) == (1, 2)
    train_autoencoder(None, None, tmp_path / "run", resume=True, progress=False)
    _assert_same_run(tmp_path / "ref", tmp_path / "run")
    ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "best.pt")["state"]
    with (tmp_path / "ref" / "metrics.csv").open() as f:
        dice = {int(r["epoch"]): float(r["dice_mean"]) for r in csv.DictReader(f)}
    assert list(dice) == [1, 2]
    # best.pt holds the epoch with the highest validation Dice, first one on a tie.
    assert ref["best_epoch"] == max(dice, key=lambda e: (dice[e], -e))
    assert ref["best_metric"] == pytest.approx(dice[ref["best_epoch"]], abs=1e-4)


def test_resume_refuses_a_changed_setting_in_one_line(tmp_path: Path, capsys) -> None:
    masks = MaskSet.from_arrays(blobs(20, 16, np.random.default_rng(3)))
    run = tmp_path / "run"
    train_autoencoder(AutoencoderConfig(**{**TINY, "epochs": 1}), masks, run, progress=False)
    argv = ["autoencoder", "train", "--resume", str(run), "--no-progress"]
    assert _cli([*argv, "--lr", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr" in err[0] and "cannot change" in err[0]
    # The run's own value, and --epochs/--device, are no change to refuse.
    assert _cli([*argv, "--lr", str(TINY.get("lr", AutoencoderConfig().lr)), "--epochs", "1"]) == 0


def test_corrupt_or_foreign_checkpoints_are_reported(tmp_path: Path, capsys) -> None:
    masks = MaskSet.from_arrays(blobs(20, 16, np.random.default_rng(3)))
    run = tmp_path / "run"
    train_autoencoder(AutoencoderConfig(**{**TINY, "epochs": 1}), masks, run, progress=False)
    with pytest.raises(ValueError, match="holds a run already"):
        train_autoencoder(AutoencoderConfig(**TINY), masks, run, progress=False)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    with pytest.raises(ValueError, match="corrupt or partial"):
        train_autoencoder(None, None, run, resume=True, progress=False)
    assert _cli(["autoencoder", "train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.pt" in err[0]
    foreign = tmp_path / "seg.pt"
    save_checkpoint(
        foreign, {"format": CHECKPOINT_FORMAT, "kind": "segmentation", "state_dict": {}}
    )
    with pytest.raises(ValueError, match="not a mask autoencoder"):
        load_autoencoder(foreign)


# --------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gliomaseg")
    ae_cli.add_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_train_on_a_cache_and_embed_a_folder(tmp_path: Path) -> None:
    for i in range(3):
        synth = make_case(
            rng=np.random.default_rng(20 + i),
            case_id=f"Synth_{i:03d}",
            template="phantom",
            shape=(32, 32, 20),
            tumour_radius_mm=9.0,
        )
        write_layout(synth, tmp_path / "raw", layout="brats2020")
    prepare_dataset(tmp_path / "raw", tmp_path / "cache", config=PrepareConfig(margin=0, folds=0))
    config = AutoencoderConfig()
    from_cache, failures = load_masks(tmp_path / "cache", config=config)
    from_folder, _ = load_masks(tmp_path / "raw", config=config)
    assert not failures and len(from_cache) >= 6
    # The cache is cropped to the brain and the folder is not: same masks, same slice numbers.
    np.testing.assert_array_equal(from_cache.masks, from_folder.masks)
    np.testing.assert_array_equal(from_cache.slice_index, from_folder.slice_index)
    np.testing.assert_allclose(from_cache.area_mm2, from_folder.area_mm2)

    run, out = tmp_path / "run", tmp_path / "embed"
    train = ["autoencoder", "train", "--masks", str(tmp_path / "cache"), "-o", str(run)]
    flags = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--no-progress"]
    assert _cli(train + flags) == 0
    for name in ("config.json", "metrics.csv", "curves.png", "masks.npz"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "best.pt").exists()
    assert json.loads((run / "config.json").read_text())["data"] == str(tmp_path / "cache")
    assert (
        _cli(
            [
                "autoencoder",
                "embed",
                "--run",
                str(run),
                "--masks",
                str(tmp_path / "raw"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "embed_report.json").read_text())
    n = report["n_slices"]
    assert n == len(from_folder) and report["n_cases"] == 3 and report["latent"] == 64
    assert set(report["spearman"]["PC1"]) == {"area_mm2", "irregularity"}
    assert np.load(out / "slice_embeddings.npy").shape == (n, 64)
    assert np.load(out / "case_embeddings.npy").shape == (3, 64)
    with (out / "slice_embeddings.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and list(rows[0])[:4] == [
        "case_id",
        "slice_index",
        "area_mm2",
        "irregularity",
    ]
    assert {r["case_id"] for r in rows} == {"Synth_000", "Synth_001", "Synth_002"}
    assert (out / "pca.png").stat().st_size > 1000
