"""2D models at a reduced in-plane resolution (``input_scale``): resizing, training, segment."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN
from gliomaseg.cli.main import main
from gliomaseg.core.errors import InputError
from gliomaseg.core.targets import TARGETS
from gliomaseg.io.cache import load_index
from gliomaseg.io.writers import write_layout
from gliomaseg.models import build_model
from gliomaseg.models.checkpoint import check_payload, load_checkpoint
from gliomaseg.models.inference import predict_volume
from gliomaseg.models.resize import (
    resize_labels,
    resize_probabilities,
    resize_slice,
    scaled_size,
)
from gliomaseg.synthetic.phantoms import make_case
from gliomaseg.train import loop as train_mod
from gliomaseg.train.config import TrainConfig
from gliomaseg.train.datasets import PreparedCases, SliceDataset
from gliomaseg.train.loop import resume_training, train

#: TINY_TRAIN on the synthetic 32x32 slices at half resolution (about 16x16).
HALF = {**TINY_TRAIN, "input_scale": 0.5, "patch_size": [16, 16]}


@pytest.fixture(scope="module")
def half_run(synthetic_cache, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("half") / "run"
    train(TrainConfig.from_dict(HALF), synthetic_cache, run, progress=False)
    return run


@pytest.mark.parametrize("shape", [(33, 35), (1, 7), (17, 16), (240, 239)])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.3])
def test_resize_round_trip_keeps_shapes_constants_and_label_codes(shape, scale):
    rng = np.random.default_rng(0)
    image = np.full((3, *shape), 2.5, dtype=np.float32)
    small = resize_slice(image, scale)
    assert small.shape == (3, *scaled_size(shape, scale))
    np.testing.assert_allclose(small, 2.5, rtol=1e-6)  # the filter weights sum to one
    back = resize_probabilities(torch.from_numpy(small)[None], shape)
    assert tuple(back.shape) == (1, 3, *shape)
    label = rng.choice(np.array([0, 1, 2, 4], np.uint8), shape)
    small_label = resize_labels(label, small.shape[-2:])
    assert small_label.shape == small.shape[-2:] and small_label.dtype == np.uint8
    assert set(np.unique(small_label)) <= {0, 1, 2, 4}


def test_invalid_scales_are_refused():
    for bad in (0.0, 1.5, -0.5, float("nan"), True):
        with pytest.raises(ValueError, match="input_scale"):
            TrainConfig.from_dict({**HALF, "input_scale": bad})
    three_d = {"model": {"name": "unet", "spatial_dims": 3}, "patch_size": [16, 32, 32]}
    with pytest.raises(ValueError, match="2D models only"):
        TrainConfig.from_dict({**three_d, "input_scale": 0.5})
    payload = {"format": 1, "state_dict": {}, "input_scale": 1.5}
    with pytest.raises(InputError, match="input_scale"):
        check_payload("x.pt", payload)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        {"name": "unet", "in_channels": 2, "out_channels": 3, "features": [4, 8], "head": "sigmoid"}
    ).eval()


def test_scale_one_is_bit_identical_to_plain_padding():
    """The pre-``input_scale`` algorithm (pad to the multiple, predict, crop), written out."""
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(5, 2, 33, 35)).astype(np.float32)
    model = _model()
    got = predict_volume(
        model, volume, target=TARGETS["regions"], multiple=4, batch_size=2, input_scale=1.0
    )
    expected = np.empty_like(got)
    for start in range(0, 5, 2):
        batch = np.pad(volume[start : start + 2], ((0, 0), (0, 0), (1, 2), (0, 1)))
        with torch.no_grad():
            probs = torch.sigmoid(model(torch.from_numpy(batch))).numpy()
        expected[:, start : start + 2] = np.moveaxis(probs[:, :, 1:34, 0:35], 1, 0)
    assert np.array_equal(got, expected)


def test_half_scale_prediction_lands_on_the_input_grid():
    """A thresholding 'network' at scale 0.5 gives back the disk it was shown, unshifted."""
    net = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(20.0)
        net.bias.fill_(-10.0)
    yy, xx = np.mgrid[:37, :41]
    disk = (yy - 14.0) ** 2 + (xx - 25.0) ** 2 <= 8.0**2
    volume = disk[None, None].astype(np.float32).repeat(3, axis=0)  # (Z=3, C=1, 37, 41)
    probs = predict_volume(
        net, volume, target=TARGETS["binary"], multiple=4, input_scale=0.5, batch_size=2
    )
    assert probs.shape == (1, 3, 37, 41)
    pred = probs[0, 1] > 0.5
    assert 2 * (pred & disk).sum() / (pred.sum() + disk.sum()) > 0.95
    centroid = np.argwhere(pred).mean(axis=0)
    np.testing.assert_allclose(centroid, [14.0, 25.0], atol=0.5)


def test_slice_samples_are_resized_then_fitted_to_the_patch(synthetic_cache):
    ids = [c["case_id"] for c in load_index(synthetic_cache)["cases"]]
    cases = PreparedCases(synthetic_cache, ids[:1])
    slices = cases.slices(tumour_only=True)
    ref = max(slices, key=lambda s: s.tumour_pixels)
    full_label = np.asarray(cases.get(0)[1][ref.z])
    kwargs = {"target": TARGETS["regions"], "channels": None}
    full = SliceDataset(cases, [ref], size=full_label.shape, **kwargs)[0]
    half = SliceDataset(cases, [ref], size=(16, 16), input_scale=0.5, **kwargs)
    sample = half[0]
    assert sample["image"].shape == (4, 16, 16) and sample["target"].shape == (3, 16, 16)
    assert set(np.unique(sample["label"].numpy())) <= {0, 1, 2, 3}
    ratio = (sample["label"] > 0).sum().item() / (full["label"] > 0).sum().item()
    assert 0.15 < ratio < 0.35  # a quarter of the pixels
    assert torch.equal(half[(0, 7)]["image"], half[(0, 7)]["image"])  # a pure function of the key


def test_training_at_half_scale_learns(half_run):
    """Seeds 0-2, float32 and bf16: the last epoch's loss was 0.41-0.48 of the first; best
    validation WT Dice (at the input's resolution) 0.90-0.94."""
    with (half_run / "metrics.csv").open() as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    assert rows[-1]["train_loss"] < 0.7 * rows[0]["train_loss"], rows
    assert max(r["dice_WT"] for r in rows) > 0.75, rows
    payload = load_checkpoint(half_run / "checkpoints" / "last.pt")
    assert payload["input_scale"] == 0.5 and payload["train_config"]["input_scale"] == 0.5


def test_segment_with_a_half_scale_model_keeps_the_input_geometry(half_run, tmp_path):
    synth = make_case(
        rng=np.random.default_rng(9),
        case_id="Case_H",
        template="phantom",
        shape=(30, 34, 18),
        spacing=(1.0, 1.0, 2.0),
        flip_axis=0,
        tumour_radius_mm=8.0,
    )
    folder = write_layout(synth, tmp_path / "in", layout="brats2020")
    model = half_run / "checkpoints" / "best.pt"
    args = ["segment", str(folder), "-o", str(tmp_path / "out"), "--model", str(model)]
    assert main([*args, "--no-progress"]) == 0
    seg = nib.load(tmp_path / "out" / "Case_H_seg.nii.gz")
    ref = nib.load(next(folder.glob("*flair*")))
    assert seg.shape == ref.shape == (30, 34, 18)
    np.testing.assert_allclose(seg.affine, ref.affine)
    raw = np.asarray(seg.dataobj) > 0
    truth = synth.label > 0
    assert (
        2 * (raw & truth).sum() / (raw.sum() + truth.sum()) > 0.6
    )  # 0.80-0.90: seeds 0-2, float32 and bf16


def test_bundle_carries_the_scale_to_the_ensemble_and_its_card(half_run, tmp_path):
    from gliomaseg.cli.train import card_lines
    from gliomaseg.train.bundle import bundle_runs

    card = bundle_runs([half_run], tmp_path / "m.pt", description="half")
    assert card["input_scale"] == 0.5
    assert load_checkpoint(tmp_path / "m.pt")["input_scale"] == 0.5
    assert "0.5x in-plane" in card_lines(tmp_path / "m.json")[1]


def test_resume_at_half_scale_is_bit_exact(synthetic_cache, tmp_path, monkeypatch):
    """Interrupted mid-epoch (after 5 of 8 steps), then resumed: the same weights."""
    cfg = {
        **HALF,
        "epochs": 2,
        "steps_per_epoch": 4,
        "batch_size": 4,
        "save_every_steps": 1,
        "fold": -1,
        "augment": {"flip": 0.5, "rotate_deg": 10.0},
    }
    config = TrainConfig.from_dict(cfg)
    train(config, synthetic_cache, tmp_path / "ref", progress=False)
    real_step, calls = train_mod._step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, synthetic_cache, tmp_path / "run", progress=False)
    monkeypatch.setattr(train_mod, "_step", real_step)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["state"]["global_step"] == 5
    resume_training(tmp_path / "run", progress=False)
    ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")["state_dict"]
    resumed = load_checkpoint(last)["state_dict"]
    assert ref.keys() == resumed.keys()
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key
