"""Tests for gliomaseg.models: one shared sweep every network goes through, then specifics."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from gliomaseg.models import (
    MODEL_NAMES,
    MODELS,
    ModelConfig,
    activation,
    build_model,
    check_input_size,
    count_parameters,
    input_multiple,
)
from gliomaseg.models.config import pad_amounts
from gliomaseg.train.losses import build_loss


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors run faster on one thread, and one thread does not stall (OpenMP
    spin-waits) when other test processes share the CPU; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Small widths keep the sweep fast; ResNet-34's encoder is fixed, only its decoder shrinks.
SMALL_FEATURES: dict[str, tuple[int, ...]] = {
    "unet": (4, 8, 16, 32),
    "attention_unet": (4, 8, 16, 32),
    "residual_unet": (4, 8, 16, 32),
    "resnet34_unet": (4, 8, 8, 16, 16),
}
# Spatial sizes in units of input_multiple: odd multiples and unequal axes catch axis mix-ups
# (unet 2D: (2, 4, 32, 48) -> 8 * (4, 6); 3D: (1, 4, 32, 32, 16)).
SPATIAL_UNITS = {2: (4, 6), 3: (4, 4, 2)}
RESNET_UNITS = {2: (2, 3), 3: (1, 1, 1)}  # ResNet-34 3D is the slow one
UPSAMPLES = {"unet": ("deconv", "nontrainable"), "resnet34_unet": ("deconv", "nontrainable")}

CASES = [
    pytest.param(name, dims, up, id=f"{name}-{dims}d-{up}")
    for name in MODEL_NAMES
    for dims in (2, 3)
    for up in UPSAMPLES.get(name, ("deconv",))
]


def _config(name: str, dims: int, upsample: str = "deconv", **kw: Any) -> ModelConfig:
    return ModelConfig(
        name=name,
        spatial_dims=dims,
        in_channels=4,
        out_channels=3,
        features=SMALL_FEATURES[name],
        upsample=upsample,
        **kw,
    )


def _input_shape(config: ModelConfig, batch: int = 2) -> tuple[int, ...]:
    units = (RESNET_UNITS if config.name == "resnet34_unet" else SPATIAL_UNITS)[config.spatial_dims]
    batch = 1 if config.spatial_dims == 3 else batch
    return (batch, config.in_channels, *(u * input_multiple(config) for u in units))


_CONVS = (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def _run_recording_last_layer(
    model: torch.nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.nn.Module]:
    """Output of ``model(x)`` and the last leaf module (Identity aside) that ran."""
    order: list[torch.nn.Module] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for m in leaves]
    with torch.no_grad():
        out = model(x)
    for hook in hooks:
        hook.remove()
    return out, [m for m in order if not isinstance(m, torch.nn.Identity)][-1]


class TestEveryModel:
    """The checks every registered network must pass (MONAI/smp style shared test)."""

    @pytest.mark.parametrize(("name", "dims", "upsample"), CASES)
    def test_shape_and_logits(self, name: str, dims: int, upsample: str) -> None:
        torch.manual_seed(0)
        config = _config(name, dims, upsample)
        model = build_model(config).eval()
        shape = _input_shape(config)
        out, last = _run_recording_last_layer(model, torch.randn(shape))
        assert out.shape == (shape[0], 3, *shape[2:])
        assert out.dtype == torch.float32
        # Logits, not probabilities: the last layer to run is a convolution.
        assert isinstance(last, _CONVS)
        probs = activation(config)(out)
        assert torch.allclose(probs.sum(1), torch.ones(()), atol=1e-5)

    @pytest.mark.parametrize("name", MODEL_NAMES)
    def test_config_round_trip(self, name: str) -> None:
        config = _config(name, 2, dropout=0.1, head="sigmoid")
        data = json.loads(json.dumps(config.to_dict()))
        assert ModelConfig.from_dict(data) == config
        assert build_model(data).config == config

    @pytest.mark.parametrize("name", MODEL_NAMES)
    def test_non_divisible_input_is_actionable(self, name: str) -> None:
        config = _config(name, 2)
        model = build_model(config).eval()
        multiple = input_multiple(config)
        shape = list(_input_shape(config))
        shape[-1] += 1
        with pytest.raises(ValueError, match=rf"pad to a multiple of {multiple}.*pad_amounts"):
            model(torch.randn(shape))

    @pytest.mark.parametrize("name", MODEL_NAMES)
    def test_gradients_reach_every_parameter(self, name: str) -> None:
        config = _config(name, 2)
        model = build_model(config)
        model(torch.randn(_input_shape(config))).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing
        assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_registry_matches_config_names() -> None:
    assert set(MODELS) == set(MODEL_NAMES)


def test_import_is_light() -> None:
    """Importing the package pulls in neither torch nor MONAI (the CLI reads configs first)."""
    code = (
        "import sys, gliomaseg.models as m; m.ModelConfig(); "
        "assert 'torch' not in sys.modules and 'monai' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "vnet"}, "name must be one of"),
        ({"spatial_dims": 1}, "spatial_dims must be 2 or 3"),
        ({"features": [16]}, "at least 2 levels"),
        ({"features": None}, "features must be a sequence of ints"),
        ({"features": [16, 0]}, r"features must be an integer in \[2, 4096\]"),
        ({"features": [16, 10**6]}, r"features must be an integer in \[2, 4096\]"),
        ({"features": [16] * 9}, "more than 8"),
        ({"in_channels": 10**6}, r"in_channels must be an integer in \[1, 1024\]"),
        ({"norm": "group"}, "norm must be one of"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
        ({"head": "softmax", "out_channels": 1}, "use head='sigmoid'"),
        ({"name": "attention_unet", "norm": "instance"}, r"\['batch'\] for attention_unet"),
        ({"name": "residual_unet", "upsample": "nontrainable"}, "for residual_unet"),
        ({"name": "resnet34_unet", "features": [16, 32, 64]}, "needs 5 decoder features"),
        ({"name": "unet", "encoder_weights": "x.pt"}, "only used by resnet34_unet"),
        ({"depth": 4}, r"unknown model config key\(s\) \['depth'\]"),
    ],
)
def test_invalid_config(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelConfig.from_dict(data)


def test_defaults_and_multiples() -> None:
    assert ModelConfig().features == (16, 32, 64, 128)
    assert input_multiple(ModelConfig()) == 8
    assert input_multiple(ModelConfig(features=(64, 128, 256, 512, 1024))) == 16
    resnet = ModelConfig(name="resnet34_unet")
    assert resnet.features == (16, 32, 64, 128, 256)
    assert input_multiple(resnet) == 32


def test_check_input_size_messages() -> None:
    config = ModelConfig(features=(8, 16, 32, 64, 128))  # 2D, 4 channels, multiple 16
    check_input_size(config, (2, 4, 240, 240))
    with pytest.raises(ValueError, match=r"\(240, 250\) is not divisible by 16.*\(240, 256\)"):
        check_input_size(config, (2, 4, 240, 250))
    with pytest.raises(ValueError, match="expects 4 input channel"):
        check_input_size(config, (2, 3, 240, 240))
    with pytest.raises(ValueError, match=r"2D and expects input \(N, C, H, W\)"):
        check_input_size(config, (2, 4, 16, 240, 240))


def test_unet_honours_depth_dropout_norm_and_upsample() -> None:
    config = ModelConfig(features=(4, 8, 16, 32, 64), norm="instance", dropout=0.2)
    net = build_model(config).net
    modules = list(net.modules())
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in modules) == 4
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.2 for m in modules)
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in modules)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in modules)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in modules)
    interp = build_model(ModelConfig(upsample="nontrainable")).net
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in interp.modules())
    assert any(isinstance(m, torch.nn.Upsample) for m in interp.modules())


def test_residual_unet_has_residual_units() -> None:
    net = build_model(ModelConfig(name="residual_unet", num_res_units=2)).net
    assert any(type(m).__name__ == "ResidualUnit" for m in net.modules())


class TestEncoderWeights:
    CONFIG: ClassVar[dict[str, Any]] = {
        "name": "resnet34_unet",
        "in_channels": 4,
        "out_channels": 2,
        "features": [4] * 5,
    }

    def test_loads_local_file(self, tmp_path: Path) -> None:
        torch.manual_seed(0)
        source = build_model(self.CONFIG).net.get_submodule("encoder")
        path = tmp_path / "resnet34_encoder.pt"
        torch.save(source.state_dict(), path)
        model = build_model({**self.CONFIG, "encoder_weights": str(path)})
        assert model.config.encoder_weights == str(path)
        loaded = model.net.get_submodule("encoder").state_dict()
        for key, value in source.state_dict().items():
            assert torch.equal(loaded[key], value), key
        # A whole-model state_dict (e.g. a previous run's checkpoint) works too.
        torch.save(build_model(self.CONFIG).state_dict(), path)
        build_model({**self.CONFIG, "encoder_weights": str(path)})

    def test_missing_corrupt_and_mismatched_files(self, tmp_path: Path) -> None:
        missing = tmp_path / "absent.pt"
        with pytest.raises(ValueError, match=r"absent\.pt does not exist"):
            build_model({**self.CONFIG, "encoder_weights": str(missing)})
        # load_weights=False (rebuilding from a checkpoint) does not need the file.
        build_model({**self.CONFIG, "encoder_weights": str(missing)}, load_weights=False)
        corrupt = tmp_path / "corrupt.pt"
        corrupt.write_bytes(b"not a checkpoint at all")
        with pytest.raises(ValueError, match=r"cannot read .*corrupt\.pt"):
            build_model({**self.CONFIG, "encoder_weights": str(corrupt)})
        other = tmp_path / "three_channels.pt"
        three = build_model({**self.CONFIG, "in_channels": 3}).net.get_submodule("encoder")
        torch.save(three.state_dict(), other)
        with pytest.raises(ValueError, match=r"shape mismatch.*conv1.weight"):
            build_model({**self.CONFIG, "encoder_weights": str(other)})


def test_few_steps_overfit_tiny_batch() -> None:
    """A U-Net learns a tiny batch: the softmax Dice+CE loss at least halves in 30 steps."""
    torch.manual_seed(0)
    config = ModelConfig(in_channels=2, out_channels=2, features=(8, 16))
    model = build_model(config)
    x = torch.randn(2, 2, 16, 16)
    target = (x[:, :1] > 0.3).long()  # learnable from the input itself
    loss_fn = build_loss({"name": "dice_ce"})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_pad_amounts_are_centred_with_the_odd_voxel_after() -> None:
    assert pad_amounts((33, 32, 0, 1), 16) == ((7, 8), (0, 0), (0, 0), (7, 8))
    assert pad_amounts((250,), 16) == ((3, 3),)
    assert pad_amounts((5, 7), 1) == ((0, 0), (0, 0))
