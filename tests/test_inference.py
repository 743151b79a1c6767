"""Inference building blocks: batch-norm folding, exact decoding, channels-last equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gliomaseg.inference import fuse_batch_norm, predict_volume
from gliomaseg.models import build_model
from gliomaseg.targets import CODES, TARGETS


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


@pytest.mark.parametrize("name", ["regions", "multilabel", "binary"])
def test_fast_sigmoid_decode_is_the_maximum_likelihood_code(name, rng):
    spec = TARGETS[name]
    probs = rng.uniform(0.01, 0.99, (spec.channels, 50)).astype(np.float32)
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
