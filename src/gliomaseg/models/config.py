"""Model configuration and input-size rules, free of torch so configs load instantly.

A :class:`ModelConfig` is the only thing needed to rebuild a network: it is stored as
``config.json`` beside every run and inside every checkpoint, and read back with
:meth:`ModelConfig.from_dict`. Options a network cannot honour are rejected here, with the
fix, rather than silently ignored when the network is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gliomaseg.core.config import from_dict

#: Network names accepted by :class:`ModelConfig` (``gliomaseg.models.MODELS`` builds them).
MODEL_NAMES: tuple[str, ...] = ("unet", "attention_unet", "residual_unet", "resnet34_unet")
NORMS: tuple[str, ...] = ("batch", "instance")
UPSAMPLES: tuple[str, ...] = ("deconv", "nontrainable")
HEADS: tuple[str, ...] = ("softmax", "sigmoid")

#: Plausibility bounds (a forged config or checkpoint must not build a multi-GB network):
#: at most 8 levels, 4096 channels per level and 1024 input or output channels.
MAX_LEVELS, MAX_WIDTH, MAX_CHANNELS = 8, 4096, 1024

#: ResNet-34 halves the input five times (stem conv, max-pool, three strided stages).
RESNET34_MULTIPLE = 32
RESNET34_LEVELS = 5

# What each network can honour. MONAI's UNet (residual_unet) and AttentionUnet always
# upsample with transposed convolutions, and AttentionUnet hard-codes batch norm.
_UPSAMPLES_BY_MODEL: dict[str, tuple[str, ...]] = {
    "unet": UPSAMPLES,
    "attention_unet": ("deconv",),
    "residual_unet": ("deconv",),
    "resnet34_unet": UPSAMPLES,
}
_NORMS_BY_MODEL: dict[str, tuple[str, ...]] = {
    "unet": NORMS,
    "attention_unet": ("batch",),
    "residual_unet": NORMS,
    "resnet34_unet": NORMS,
}
_DEFAULT_FEATURES: dict[str, tuple[int, ...]] = {
    "unet": (16, 32, 64, 128),
    "attention_unet": (16, 32, 64, 128),
    "residual_unet": (16, 32, 64, 128),
    # MONAI FlexibleUNet's decoder default (256, 128, 64, 32, 16), listed top level first.
    "resnet34_unet": (16, 32, 64, 128, 256),
}


@dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments of a segmentation network (2D or 3D).

    Every model maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)`` logits in 2D and
    ``(N, in_channels, D, H, W)`` to ``(N, out_channels, D, H, W)`` in 3D.

    ===============  =========================================================================
    name             network
    ===============  =========================================================================
    unet             classic U-Net (two 3x3 conv + norm + ReLU per level, max-pool down,
                     ``upsample`` up, skip concatenation), built from MONAI ``BasicUNet``
                     blocks but of any depth ``len(features)``
    attention_unet   MONAI ``AttentionUnet``: attention gates on the skips; batch norm and
                     transposed convolutions only
    residual_unet    MONAI ``UNet`` with ``num_res_units`` residual units per level (strided
                     conv down, transposed conv up, PReLU); transposed convolutions only;
                     built by :mod:`gliomaseg.models.plain_unet` (the same network in plain
                     torch, same weights' names, so inference needs no MONAI)
    resnet34_unet    MONAI ``FlexibleUNet`` with a ResNet-34 encoder (batch norm, always) and
                     a U-Net decoder; ``features``, ``norm``, ``dropout`` and ``upsample``
                     set the decoder; encoder weights only from a local file
    ===============  =========================================================================

    Attributes:
        name: One of :data:`MODEL_NAMES`.
        spatial_dims: 2 (slices) or 3 (volumes).
        in_channels: Input channels, e.g. 4 for BraTS (T1, T1ce, T2, FLAIR), 3 for LGG RGB.
        out_channels: Output channels: classes for ``head="softmax"`` (background included),
            regions or labels for ``head="sigmoid"`` (e.g. 3 for WT/TC/ET, 1 for binary).
        features: Channels per level, top (full-resolution) level first; the depth is
            ``len(features)`` and the input is halved ``len(features) - 1`` times. For
            ``resnet34_unet`` these are the 5 decoder widths (the encoder is fixed at
            64-64-128-256-512). Empty (the default) takes the model's default:
            ``(16, 32, 64, 128)``, or ``(16, 32, 64, 128, 256)`` for ``resnet34_unet``.
        norm: ``"batch"`` or ``"instance"`` (instance norm has learnable affine parameters).
        dropout: Dropout probability after the normalisation of every convolution (MONAI's
            norm-dropout-activation order); 0 for none.
        upsample: ``"deconv"`` (transposed convolution) or ``"nontrainable"`` (1x1 conv to
            halve the channels, then (bi/tri)linear interpolation for ``unet``, nearest for
            ``resnet34_unet``).
        num_res_units: Residual units per level of ``residual_unet`` (ignored by the others);
            0 gives MONAI's plain strided U-Net (one strided convolution down and one
            transposed convolution up per level, no residual units: the cheapest on a CPU).
        head: ``"softmax"`` (mutually exclusive classes; needs ``out_channels >= 2``) or
            ``"sigmoid"`` (independent channels: overlapping regions or a binary mask). The
            network always returns logits; :func:`gliomaseg.models.activation` applies it.
        encoder_weights: Path of a local ``.pt`` state_dict of the ResNet-34 encoder
            (``resnet34_unet`` only), loaded by ``build_model``; None for random init.

    Raises:
        ValueError: at construction, for any value out of range or an option the chosen
            network cannot honour; the message names the field and the fix.
    """

    name: str = "unet"
    spatial_dims: int = 2
    in_channels: int = 4
    out_channels: int = 4
    features: tuple[int, ...] = ()
    norm: str = "batch"
    dropout: float = 0.0
    upsample: str = "deconv"
    num_res_units: int = 2
    head: str = "softmax"
    encoder_weights: str | None = None

    def __post_init__(self) -> None:
        _choice("name", self.name, MODEL_NAMES)
        if self.spatial_dims not in (2, 3) or isinstance(self.spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        _int_in("in_channels", self.in_channels, 1, MAX_CHANNELS)
        _int_in("out_channels", self.out_channels, 1, MAX_CHANNELS)
        _int_in("num_res_units", self.num_res_units, 0, MAX_LEVELS)
        if isinstance(self.features, str) or not isinstance(self.features, Sequence):
            raise ValueError(f"features must be a sequence of ints, got {self.features!r}")
        if len(self.features) > MAX_LEVELS:
            raise ValueError(
                f"features has {len(self.features)} levels, more than {MAX_LEVELS}; "
                "e.g. (16, 32, 64, 128)"
            )
        features = tuple(self.features) or _DEFAULT_FEATURES[self.name]
        for value in features:
            _int_in("every entry of features", value, 2, MAX_WIDTH)
        object.__setattr__(self, "features", features)
        _choice("norm", self.norm, _NORMS_BY_MODEL[self.name], model=self.name)
        _choice("upsample", self.upsample, _UPSAMPLES_BY_MODEL[self.name], model=self.name)
        _choice("head", self.head, HEADS)
        dropout = self.dropout
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        object.__setattr__(self, "dropout", float(dropout))
        self._check_model_specifics()

    def _check_model_specifics(self) -> None:
        if self.name == "resnet34_unet" and len(self.features) != RESNET34_LEVELS:
            raise ValueError(
                f"resnet34_unet needs {RESNET34_LEVELS} decoder features (one per ResNet "
                f"stage), got {len(self.features)}: {self.features}; e.g. (16, 32, 64, 128, 256)"
            )
        if len(self.features) < 2:
            raise ValueError(
                f"features needs at least 2 levels, got {self.features}; e.g. (16, 32, 64, 128)"
            )
        if self.head == "softmax" and self.out_channels < 2:
            raise ValueError(
                "head='softmax' over 1 channel is always 1; use head='sigmoid' for a binary "
                "mask, or out_channels=2 (background + tumour)"
            )
        if self.encoder_weights is not None:
            if self.name != "resnet34_unet":
                raise ValueError(
                    f"encoder_weights is only used by resnet34_unet, not {self.name!r}; "
                    "remove it or set name='resnet34_unet'"
                )
            if not isinstance(self.encoder_weights, str | Path):
                raise ValueError(f"encoder_weights must be a path, got {self.encoder_weights!r}")
            object.__setattr__(self, "encoder_weights", str(self.encoder_weights))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["features"] = list(self.features)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. a checkpoint's ``config.json``).

        Missing keys take their defaults.

        Raises:
            ValueError: unknown keys (named, with the known ones) or invalid values.
        """
        return from_dict(cls, data, what="model config", tuples=("features",))


def input_multiple(config: ModelConfig) -> int:
    """Spatial size divisor the network needs on every spatial axis.

    Returns:
        ``2 ** (len(features) - 1)`` for the U-Nets (one halving per level below the top),
        32 for ``resnet34_unet``.
    """
    if config.name == "resnet34_unet":
        return RESNET34_MULTIPLE
    return int(2 ** (len(config.features) - 1))


def check_input_size(config: ModelConfig, shape: Sequence[int]) -> None:
    """Check that an input batch shape suits the network, before running it.

    Args:
        config: The model's configuration.
        shape: Input shape ``(N, C, H, W)`` for 2D or ``(N, C, D, H, W)`` for 3D.

    Raises:
        ValueError: wrong number of axes, wrong channel count, or a spatial size that is not a
            multiple of :func:`input_multiple`; the message says what to pad to and how.
    """
    shape = tuple(int(s) for s in shape)
    axes = "(N, C, H, W)" if config.spatial_dims == 2 else "(N, C, D, H, W)"
    if len(shape) != config.spatial_dims + 2:
        raise ValueError(
            f"{config.name} is {config.spatial_dims}D and expects input {axes}, got shape "
            f"{shape}; add the batch/channel axes or pick spatial_dims={len(shape) - 2}"
        )
    if shape[1] != config.in_channels:
        raise ValueError(
            f"{config.name} expects {config.in_channels} input channel(s) (in_channels), got "
            f"{shape[1]} in shape {shape}; check the modality list or set in_channels"
        )
    multiple = input_multiple(config)
    spatial = shape[2:]
    if any(s < 1 or s % multiple for s in spatial):
        sizes = [max(1, s) for s in spatial]
        pads = pad_amounts(sizes, multiple)
        padded = tuple(s + a + b for s, (a, b) in zip(sizes, pads, strict=True))
        raise ValueError(
            f"input spatial size {spatial} is not divisible by {multiple} ({config.name} with "
            f"features {config.features} halves it {multiple.bit_length() - 1} times); pad to "
            f"a multiple of {multiple} -> {padded}, e.g. by gliomaseg.models.config.pad_amounts"
            f"(size, {multiple}) each side, and crop the prediction back"
        )


def pad_amounts(size: Sequence[int], multiple: int) -> tuple[tuple[int, int], ...]:
    """Padding that brings every axis of ``size`` up to the next multiple of ``multiple``.

    Lives here, not in :mod:`gliomaseg.models.inference` (which pads with it), so that
    :func:`check_input_size` can name the padded size without importing torch.

    Args:
        size: Spatial sizes, one per axis (e.g. (H, W)).
        multiple: The divisor (:func:`input_multiple`), >= 1.

    Returns:
        ``(before, after)`` per axis, centred: half before, the odd voxel after, so
        ``[before : before + s]`` crops the padded axis back. (0, 0) for a size already a
        multiple (0 included).
    """
    pads = [-int(s) % multiple for s in size]
    return tuple((pad // 2, pad - pad // 2) for pad in pads)


def _choice(field: str, value: object, allowed: tuple[str, ...], *, model: str = "") -> None:
    if value not in allowed:
        where = f" for {model}" if model else ""
        raise ValueError(f"{field} must be one of {list(allowed)}{where}, got {value!r}")


def _int_in(field: str, value: object, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{field} must be an integer in [{minimum}, {maximum}], got {value!r}")


__all__ = [
    "HEADS",
    "MODEL_NAMES",
    "NORMS",
    "UPSAMPLES",
    "ModelConfig",
    "check_input_size",
    "input_multiple",
    "pad_amounts",
]
