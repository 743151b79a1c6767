"""The plain-torch residual U-Net against MONAI's ``UNet``: same tree, keys, init and outputs.

Equality is exact (``torch.equal``, float32, CPU): both networks run the same torch
operations in the same order on the same weights, so there is no tolerance to justify.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from gliomaseg.models import ModelConfig, build_model
from gliomaseg.models.networks import monai_norm
from gliomaseg.models.plain_unet import ResidualUNet

monai_nets = pytest.importorskip("monai.networks.nets")

#: (spatial_dims, features, input spatial size): tiny and medium widths, sizes that are
#: multiples of the network's divisor but neither square nor powers of two.
SHAPES: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = [
    (2, (2, 4), (6, 10)),
    (2, (4, 8, 16), (12, 20)),
    (3, (2, 4), (6, 4, 10)),
    (3, (4, 8, 16), (12, 8, 20)),
]
#: The shipped family at full width (16-256, one residual unit), 2D and 3D, both norms.
FULL_WIDTH = [
    (2, (16, 32, 64, 128, 256), (16, 48), 1, "batch", 0.1),
    (2, (16, 32, 64, 128, 256), (16, 48), 1, "instance", 0.0),
    (3, (16, 32, 64), (4, 12, 8), 1, "batch", 0.0),
    (3, (16, 32, 64), (4, 12, 8), 0, "instance", 0.2),
]
CASES = [
    (*shape, res, norm, dropout)
    for shape, res, norm, dropout in itertools.product(
        SHAPES, (0, 1, 2), ("batch", "instance"), (0.0, 0.2)
    )
] + FULL_WIDTH


def _kwargs(dims: int, features: tuple[int, ...]) -> dict[str, Any]:
    return {"spatial_dims": dims, "in_channels": 3, "out_channels": 2, "features": features}


def _monai(
    dims: int,
    features: tuple[int, ...],
    res: int,
    norm: str,
    dropout: float,
    *,
    channels: tuple[int, int] = (3, 2),
):
    return monai_nets.UNet(
        spatial_dims=dims,
        in_channels=channels[0],
        out_channels=channels[1],
        channels=features,
        strides=(2,) * (len(features) - 1),
        num_res_units=res,
        norm=monai_norm(norm),
        dropout=dropout,
    )


def _plain(
    dims: int,
    features: tuple[int, ...],
    res: int,
    norm: str,
    dropout: float,
    *,
    channels: tuple[int, int] = (3, 2),
):
    return ResidualUNet(
        spatial_dims=dims,
        in_channels=channels[0],
        out_channels=channels[1],
        channels=features,
        num_res_units=res,
        norm=norm,
        dropout=dropout,
    )


def _scramble(net: torch.nn.Module, seed: int) -> None:
    """Random weights and batch-norm statistics, so nothing passes by being at its init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point():
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.3)


def _run(net: torch.nn.Module, x: torch.Tensor, *, train: bool) -> torch.Tensor:
    net.train(train)
    torch.manual_seed(5)  # the same dropout masks for both
    return net(x)


@pytest.mark.parametrize(("dims", "features", "size", "res", "norm", "dropout"), CASES)
def test_same_tree_init_and_outputs_as_monai(dims, features, size, res, norm, dropout) -> None:
    torch.manual_seed(0)
    reference = _monai(dims, features, res, norm, dropout)
    torch.manual_seed(0)
    plain = _plain(dims, features, res, norm, dropout)
    # Same modules with the same constructor arguments, and the same seeded initialisation.
    assert repr(plain.model) == repr(reference.model)
    ref_state, plain_state = reference.state_dict(), plain.state_dict()
    assert list(plain_state) == list(ref_state)
    assert all(torch.equal(plain_state[k], ref_state[k]) for k in ref_state)

    _scramble(reference, seed=1)
    plain = _plain(dims, features, res, norm, dropout)
    plain.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(_run(plain, x, train=False), _run(reference, x, train=False))
    # Train mode: batch statistics, dropout masks, running-stat updates and gradients.
    out_plain, out_ref = _run(plain, x, train=True), _run(reference, x, train=True)
    assert torch.equal(out_plain, out_ref)
    out_plain.square().mean().backward()
    out_ref.square().mean().backward()
    ref_params = dict(reference.named_parameters())
    for name, param in plain.named_parameters():
        assert param.grad is not None and torch.equal(param.grad, ref_params[name].grad), name
    ref_state = reference.state_dict()
    assert all(torch.equal(t, ref_state[k]) for k, t in plain.state_dict().items())


@pytest.mark.parametrize(("features", "size"), [((4, 8), (33, 35)), ((4, 8, 16), (33, 34))])
def test_indivisible_input_behaves_the_same(features, size) -> None:
    """Sizes the network cannot halve: same (odd-sized) output, or the same error."""
    torch.manual_seed(0)
    nets = [make(2, features, 1, "instance", 0.0).eval() for make in (_monai, _plain)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(1, 3, *size)
    results = []
    with torch.no_grad():
        for net in nets:
            try:
                results.append(net(x))
            except RuntimeError as err:
                results.append(type(err))
    if isinstance(results[0], torch.Tensor):
        assert torch.equal(results[0], results[1])
    else:
        assert results[0] is results[1] is RuntimeError


def test_build_model_uses_the_plain_network_with_monai_keys() -> None:
    config = ModelConfig(name="residual_unet", num_res_units=1, **_kwargs(2, (4, 8, 16)))
    model = build_model(config)
    assert isinstance(model.net, ResidualUNet)
    reference = _monai(2, (4, 8, 16), 1, "batch", 0.0)
    assert list(model.net.state_dict()) == list(reference.state_dict())


@pytest.mark.parametrize("name", ["brats", "lgg"])
def test_bundled_models_give_identical_outputs(name: str) -> None:
    """The shipped weights in the plain network and in MONAI's, fused and channels-last too."""
    from gliomaseg.models.checkpoint import load_model
    from gliomaseg.models.ensemble import MeanEnsemble
    from gliomaseg.models.inference import fuse_batch_norm
    from gliomaseg.segment.models import resolve_model

    plain, meta = load_model(resolve_model(name))
    config = ModelConfig.from_dict(meta["model_config"])
    assert isinstance(plain, MeanEnsemble)
    members = []
    for member in plain.members:
        assert isinstance(member.net, ResidualUNet)
        ref = _monai(
            2,
            config.features,
            config.num_res_units,
            config.norm,
            config.dropout,
            channels=(config.in_channels, config.out_channels),
        )
        ref.load_state_dict(member.net.state_dict(), strict=True)
        members.append(ref.eval())
    x = torch.randn(1, config.in_channels, 32, 48, generator=torch.Generator().manual_seed(3))

    def mean(outputs: list[torch.Tensor]) -> torch.Tensor:  # as MeanEnsemble sums them
        total = outputs[0]
        for out in outputs[1:]:
            total = total + out
        return total / len(outputs)

    with torch.no_grad():
        expected = mean([m(x) for m in members])
        got = plain(x)
        assert torch.equal(got, expected)
        fused = fuse_batch_norm(plain).to(memory_format=torch.channels_last)
        fused_ref = [
            fuse_batch_norm(m).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            for m in members
        ]
        x_cl = x.contiguous(memory_format=torch.channels_last)
        expected_fused = mean([m(x_cl) for m in fused_ref])
        assert torch.equal(fused(x_cl), expected_fused)
        # folding batch norm changes rounding only
        torch.testing.assert_close(expected_fused, expected, rtol=1e-4, atol=1e-4)
