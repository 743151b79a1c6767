"""Inference building blocks: batch-norm folding, exact decoding, channels-last equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gliomaseg.core.machine import native_bf16
from gliomaseg.core.targets import CODES, TARGETS
from gliomaseg.models import build_model
from gliomaseg.models.inference import (
    fuse_batch_norm,
    inference_copy,
    instance_norm_as_group_norm,
    predict_volume,
)


@pytest.mark.parametrize("name", ["unet", "residual_unet", "attention_unet"])
def test_fused_batch_norm_computes_the_same_function(name):
    torch.manual_seed(0)
    model = build_model(
        {
            "name": name,
            "in_channels": 2,
            "out_channels": 3,
            "features": [4, 8, 16],
            "head": "sigmoid",
        }
    )
    model.train()
    with torch.no_grad():  # give the running statistics non-trivial values
        for _ in range(3):
            model(torch.randn(4, 2, 32, 32) * 3 + 1)
    model.eval()
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        before = model(x)
        fused = fuse_batch_norm(model)
        after = fused(x)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "dims"), [("residual_unet", 2), ("residual_unet", 3), ("unet", 2)]
)
def test_instance_norm_as_group_norm_computes_the_same_function(name, dims):
    torch.manual_seed(0)
    config = {"name": name, "spatial_dims": dims, "in_channels": 2, "out_channels": 3}
    model = build_model({**config, "features": [4, 8, 16], "norm": "instance"}).eval()
    with torch.no_grad():  # non-trivial affine parameters
        for module in model.modules():
            if isinstance(module, torch.nn.modules.instancenorm._InstanceNorm):
                module.weight.normal_(1, 0.3)
                module.bias.normal_(0, 0.3)
    x = torch.randn(2, 2, *(12, 16, 20)[-dims:])
    with torch.no_grad():
        before = model(x)
        swapped = instance_norm_as_group_norm(model)
        if dims == 2:
            swapped = swapped.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        after = swapped(x)
    assert not any(
        isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in swapped.modules()
    )
    assert any(isinstance(m, torch.nn.GroupNorm) for m in swapped.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def _fused_residual_unet(norm: str = "batch") -> torch.nn.Module:
    torch.manual_seed(0)
    config = {"name": "residual_unet", "in_channels": 2, "out_channels": 3, "num_res_units": 1}
    model = build_model({**config, "features": [4, 8, 16], "norm": norm})
    with torch.no_grad():  # slopes that differ per layer and are not bf16-exact
        for module in model.modules():
            if isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(0.01, 0.4)
    return fuse_batch_norm(model.eval()).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("bf16", [False, True])
def test_inference_copy_computes_the_same_logits_bit_for_bit(bf16):
    if bf16 and not native_bf16():
        pytest.skip("bf16 autocast is only used where the CPU has native bf16")
    model = _fused_residual_unet()
    x = (torch.randn(3, 2, 32, 48) * 2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            before = model(x).float()
        fast = inference_copy(model, bf16=bf16)
        assert fast is not None and fast is not model
        after = fast(x.to(torch.bfloat16) if bf16 else x).float()
    assert not any(isinstance(m, torch.nn.PReLU) for m in fast.modules())
    assert any(isinstance(m, torch.nn.PReLU) for m in model.modules())  # original untouched
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_inference_copy_keeps_autocast_for_normalisation_layers():
    model = _fused_residual_unet("instance")
    assert inference_copy(model, bf16=True) is None
    assert inference_copy(model, bf16=False) is not None


def test_instance_norm_with_running_statistics_is_left_alone():
    norm = torch.nn.InstanceNorm2d(4, track_running_stats=True)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), norm)
    assert instance_norm_as_group_norm(model)[1] is norm


@pytest.mark.parametrize("name", ["regions", "multilabel", "binary"])
def test_fast_sigmoid_decode_is_the_maximum_likelihood_code(name, rng):
    spec = TARGETS[name]
    probs = rng.uniform(0.01, 0.99, (spec.channels, 50)).astype(np.float32)
    probs[:, :5] = 0.5  # ties: background, the first maximum
    probs[0, 5:10] = 0.5
    scores = np.stack(
        [
            sum(
                np.log(probs[k]) if code in g else np.log1p(-probs[k])
                for k, g in enumerate(spec.groups)
            )
            for code in CODES
        ]
    )
    np.testing.assert_array_equal(spec.decode(probs), np.argmax(scores, axis=0))


def test_channels_last_inference_matches(rng):
    torch.manual_seed(0)
    model = build_model(
        {
            "name": "unet",
            "in_channels": 2,
            "out_channels": 3,
            "features": [4, 8, 16],
            "head": "sigmoid",
        }
    ).eval()
    volume = rng.normal(size=(5, 2, 30, 26)).astype(np.float32)
    plain = predict_volume(model, volume, target=TARGETS["regions"], multiple=4, batch_size=2)
    model = model.to(memory_format=torch.channels_last)
    fast = predict_volume(
        model, volume, target=TARGETS["regions"], multiple=4, batch_size=2, channels_last=True
    )
    assert plain.shape == (3, 5, 30, 26)
    np.testing.assert_allclose(fast, plain, atol=1e-5)


def _conv(weight: torch.Tensor) -> torch.nn.Conv2d:
    """A 3x3 convolution (zero padding, no bias) with the given (K, C, 3, 3) weights."""
    conv = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv.eval()


@pytest.mark.parametrize("target", ["regions", "classes4"])
def test_flip_tta_leaves_a_flip_equivariant_model_unchanged(target, rng):
    """A convolution whose kernel is symmetric under both in-plane flips (with zero padding)
    commutes with the flips, so averaging over them changes nothing."""
    torch.manual_seed(1)
    k = torch.randn(TARGETS[target].channels, 2, 3, 3)
    k = (k + k.flip(-1) + k.flip(-2) + k.flip(-2, -1)) / 4
    model = _conv(k)
    volume = rng.normal(size=(3, 2, 13, 10)).astype(np.float32)  # odd size: padded to 4
    kwargs = {"target": TARGETS[target], "multiple": 4, "batch_size": 2}
    plain = predict_volume(model, volume, **kwargs)
    tta = predict_volume(model, volume, tta=True, **kwargs)
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_flip_tta_is_the_mean_of_the_flipped_predictions(rng):
    torch.manual_seed(2)
    model = _conv(torch.randn(3, 2, 3, 3))  # not symmetric: flips change its output
    volume = rng.normal(size=(3, 2, 12, 8)).astype(np.float32)  # no padding at multiple 4
    x = torch.from_numpy(volume)
    with torch.no_grad():
        by_hand = (
            sum(
                torch.sigmoid(model(x.flip(dims))).flip(dims) if dims else torch.sigmoid(model(x))
                for dims in [(), (-1,), (-2,), (-2, -1)]
            )
            / 4
        )
    expected = by_hand.numpy().transpose(1, 0, 2, 3)  # (K, Z, x, y)
    kwargs = {"target": TARGETS["regions"], "multiple": 4, "batch_size": 2}
    tta = predict_volume(model, volume, tta=True, **kwargs)
    np.testing.assert_allclose(tta, expected, atol=1e-6)
    plain = predict_volume(model, volume, **kwargs)
    assert np.abs(tta - plain).max() > 0.05  # the test would see a TTA that did nothing
