"""Network modules: the configurable U-Net, the checking wrapper and encoder-weight loading.

MONAI is imported inside the constructors: ``import monai`` takes seconds and this module
is reached from the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gliomaseg.models.config import ModelConfig, check_input_size
from gliomaseg.models.torch_file import TorchFileError, load_torch_file

# ReLU as in the U-Net papers (and the LGG / BraTS U-Nets built on them).
_ACT: tuple[str, dict[str, Any]] = ("relu", {"inplace": True})

#: Prefixes stripped from encoder state_dict keys: DataParallel/DDP, or a whole
#: FlexibleUNet / SegmentationModel state_dict.
_KEY_PREFIXES: tuple[str, ...] = ("module.", "net.", "encoder.")


def monai_norm(norm: str) -> str | tuple[str, dict[str, Any]]:
    """MONAI norm spec for a config's ``norm`` (instance norm with learnable affine)."""
    return ("instance", {"affine": True}) if norm == "instance" else "batch"


class UNet(nn.Module):
    """Classic U-Net of any depth in 2D or 3D, built from MONAI ``BasicUNet`` blocks.

    MONAI's ``BasicUNet`` fixes five levels and its ``UNet`` uses one strided convolution per
    level with transposed-conv upsampling only; this keeps ``BasicUNet``'s tested blocks
    (``TwoConv``, ``Down``, ``UpCat``) and lets ``features`` set the depth.

    Level ``i`` has two (3x3 conv, norm, dropout, ReLU) with ``features[i]`` channels; going
    down is 2x max-pooling, going up is a transposed conv (``"deconv"``) or a 1x1 conv and
    (bi/tri)linear interpolation (``"nontrainable"``) to ``features[i + 1] // 2`` channels,
    then concatenation with the skip. A 1x1 conv maps ``features[0]`` to the outputs.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        out_channels: Output channels (logits).
        features: Channels per level, top level first.
        norm: ``"batch"`` or ``"instance"``.
        dropout: Dropout probability after each normalisation.
        upsample: ``"deconv"`` or ``"nontrainable"``.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        norm: str = "batch",
        dropout: float = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        from monai.networks.layers.factories import Conv
        from monai.networks.nets.basic_unet import Down, TwoConv, UpCat

        norm_spec = monai_norm(norm)
        # Convolutions feed a norm layer with its own shift, so a bias would be redundant.
        common: dict[str, Any] = {"act": _ACT, "norm": norm_spec, "bias": False, "dropout": dropout}
        self.stem = TwoConv(spatial_dims, in_channels, features[0], **common)
        self.downs = nn.ModuleList(
            Down(spatial_dims, upper, lower, **common) for upper, lower in pairwise(features)
        )
        self.ups = nn.ModuleList(
            UpCat(
                spatial_dims,
                lower,
                upper,
                upper,
                **common,
                upsample=upsample,
                interp_mode="linear",
                align_corners=False,
            )
            for upper, lower in reversed(list(pairwise(features)))
        )
        self.head = Conv["conv", spatial_dims](features[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: ``(N, in_channels, H, W)`` or ``(N, in_channels, D, H, W)`` float tensor, each
                spatial size a multiple of ``2 ** (len(features) - 1)``.

        Returns:
            Logits ``(N, out_channels, H, W)`` or ``(N, out_channels, D, H, W)``.
        """
        x = self.stem(x)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = up(x, skip)
        logits: torch.Tensor = self.head(x)
        return logits


class SegmentationModel(nn.Module):
    """A network together with its :class:`ModelConfig`, checking inputs before running.

    The wrapped network's parameters live under ``net.`` in the state_dict.

    Attributes:
        net: The network.
        config: The configuration it was built from (saved with checkpoints).
    """

    def __init__(self, net: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.net = net
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: ``(N, in_channels, H, W)`` (2D) or ``(N, in_channels, D, H, W)`` (3D) float
                tensor; spatial sizes multiples of ``input_multiple(config)``.

        Returns:
            Logits (not probabilities) ``(N, out_channels, *spatial)``; apply
            ``gliomaseg.models.activation(config)`` for probabilities.

        Raises:
            ValueError: wrong axes, channels or spatial size, from
                :func:`~gliomaseg.models.check_input_size`.
        """
        check_input_size(self.config, x.shape)
        logits: torch.Tensor = self.net(x)
        return logits


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a local state_dict into an encoder, in place (nothing is ever downloaded).

    Accepted files: ``torch.save(encoder.state_dict(), path)``, a whole ``FlexibleUNet`` or
    :class:`SegmentationModel` state_dict (only ``encoder.`` keys are used), optionally under a
    ``"state_dict"`` key or with a DataParallel ``module.`` prefix. Classifier keys (``fc.``)
    are dropped.

    Raises:
        ValueError: the file is missing, unreadable, not a state_dict, or its keys/shapes do
            not match the encoder (listed, with the likely cause).
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(
            f"encoder_weights: {file} does not exist; give the path of a local .pt state_dict "
            "of the ResNet-34 encoder (weights are never downloaded), or set it to None"
        )
    try:
        state = load_torch_file(file, what="state_dict")
    except TorchFileError as err:
        raise ValueError(
            f"encoder_weights: cannot read {file} as a PyTorch state_dict ({err.reason}); "
            "re-save it with torch.save(model.encoder.state_dict(), path)"
        ) from err
    state = _encoder_state(state, file)
    _check_state_matches(encoder.state_dict(), state, file)
    encoder.load_state_dict(state, strict=True)


def _encoder_state(state: object, file: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"encoder_weights: {file} does not hold a state_dict (a dict of name -> tensor); "
            "save one with torch.save(model.encoder.state_dict(), path)"
        )
    out: dict[str, torch.Tensor] = dict(state)
    for prefix in _KEY_PREFIXES:
        if prefix == "encoder." and any(k.startswith(prefix) for k in out):
            out = {k: v for k, v in out.items() if k.startswith(prefix)}  # whole-model file
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return {k: v for k, v in out.items() if not k.startswith("fc.")}


def _check_state_matches(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], file: Path
) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if found[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or shapes):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[:3]}")
    if shapes:
        problems.append(f"shape mismatch e.g. {shapes[:3]}")
    raise ValueError(
        f"encoder_weights: {file} does not fit the ResNet-34 encoder ({'; '.join(problems)}); "
        "it must come from a MONAI ResNet-34 encoder with the same spatial_dims and "
        "in_channels (conv1.weight is (64, in_channels, 7, 7[, 7]))"
    )


__all__ = ["SegmentationModel", "UNet", "load_encoder_weights", "monai_norm"]
