"""Build networks from a :class:`ModelConfig` through an explicit registry.

torch and MONAI are imported inside the builders, so importing :mod:`gliomaseg.models`
stays instant (the CLI reads model configs before it needs a network). ``residual_unet`` (the
bundled models) is built without MONAI: :mod:`gliomaseg.models.plain_unet`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gliomaseg.models.config import ModelConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


def _strides(config: ModelConfig) -> tuple[int, ...]:
    return (2,) * (len(config.features) - 1)


def _build_unet(config: ModelConfig) -> nn.Module:
    from gliomaseg.models.networks import UNet

    return UNet(
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        features=config.features,
        norm=config.norm,
        dropout=config.dropout,
        upsample=config.upsample,
    )


def _build_attention_unet(config: ModelConfig) -> nn.Module:
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        channels=config.features,
        strides=_strides(config),
        dropout=config.dropout,
    )


def _build_residual_unet(config: ModelConfig) -> nn.Module:
    # MONAI's UNet rebuilt in plain torch (same module tree, state_dict keys, initialisation
    # and outputs, checked against MONAI in tests/test_plain_unet.py): importing MONAI would
    # cost segment more time than the network takes.
    from gliomaseg.models.plain_unet import ResidualUNet

    return ResidualUNet(
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        channels=config.features,
        num_res_units=config.num_res_units,
        norm=config.norm,
        dropout=config.dropout,
    )


def _build_resnet34_unet(config: ModelConfig) -> nn.Module:
    from monai.networks.nets import FlexibleUNet

    from gliomaseg.models.networks import monai_norm

    return FlexibleUNet(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        backbone="resnet34",
        pretrained=False,  # never download; encoder_weights come from a local file
        decoder_channels=tuple(reversed(config.features)),  # FlexibleUNet lists deepest first
        spatial_dims=config.spatial_dims,
        norm=monai_norm(config.norm),
        dropout=config.dropout,
        upsample=config.upsample,
    )


#: Model name -> builder returning the bare network (logits out). Keys match MODEL_NAMES.
MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "unet": _build_unet,
    "attention_unet": _build_attention_unet,
    "residual_unet": _build_residual_unet,
    "resnet34_unet": _build_resnet34_unet,
}


def _as_config(config: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    return config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)


def build_model(
    config: ModelConfig | Mapping[str, Any], *, load_weights: bool = True
) -> torch.nn.Module:
    """Build the network a config describes, wrapped to check its inputs.

    Args:
        config: A :class:`ModelConfig` or its :meth:`~ModelConfig.to_dict` form.
        load_weights: Load ``config.encoder_weights`` when set. Pass False when a full
            state_dict is loaded next (rebuilding from a checkpoint), so the encoder file need
            not exist on this machine.

    Returns:
        A :class:`~gliomaseg.models.networks.SegmentationModel` mapping ``(N, C_in, *spatial)``
        to logits ``(N, C_out, *spatial)``; ``model.config`` is the config, the network is
        ``model.net``. Freshly built, in training mode, on the CPU.

    Raises:
        ValueError: invalid config, or an unusable ``encoder_weights`` file.
    """
    from gliomaseg.models.networks import SegmentationModel, load_encoder_weights

    cfg = _as_config(config)
    net = MODELS[cfg.name](cfg)
    if load_weights and cfg.encoder_weights is not None:
        load_encoder_weights(net.get_submodule("encoder"), cfg.encoder_weights)
    return SegmentationModel(net, cfg)


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def activation(
    config: ModelConfig | Mapping[str, Any],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Function turning the model's logits into probabilities, per its ``head``.

    Returns:
        For ``"softmax"``: softmax over the channel axis (dim 1), channels sum to 1. For
        ``"sigmoid"``: elementwise sigmoid, channels independent. Shapes are unchanged,
        ``(N, C, *spatial)`` -> ``(N, C, *spatial)``.
    """
    import torch

    if _as_config(config).head == "sigmoid":
        return torch.sigmoid

    def softmax(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    return softmax


__all__ = ["MODELS", "activation", "build_model", "count_parameters"]
