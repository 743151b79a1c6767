"""Segmentation networks: one U-Net family, 2D and 3D, built from a config by an explicit dict.

Example::

    from gliomaseg.models import ModelConfig, activation, build_model

    config = ModelConfig(name="unet", spatial_dims=2, in_channels=4, out_channels=4)
    model = build_model(config)  # (N, 4, H, W) -> logits (N, 4, H, W)
    probs = activation(config)(model(x))  # softmax over dim 1 (sigmoid if head="sigmoid")

Importing this package does not import torch or MONAI (they load when a model is built);
:class:`ModelConfig` validation and :func:`check_input_size` are pure Python.

Submodules: :mod:`~gliomaseg.models.config` (configuration, input-size rules),
:mod:`~gliomaseg.models.factory` (registry and builders),
:mod:`~gliomaseg.models.networks` (the U-Net, the checking wrapper, encoder weights),
:mod:`~gliomaseg.models.plain_unet` (MONAI's residual U-Net in plain torch).
"""

from __future__ import annotations

from gliomaseg.models.config import (
    HEADS,
    MODEL_NAMES,
    NORMS,
    UPSAMPLES,
    ModelConfig,
    check_input_size,
    input_multiple,
)
from gliomaseg.models.factory import MODELS, activation, build_model, count_parameters

__all__ = [
    "HEADS",
    "MODELS",
    "MODEL_NAMES",
    "NORMS",
    "UPSAMPLES",
    "ModelConfig",
    "activation",
    "build_model",
    "check_input_size",
    "count_parameters",
    "input_multiple",
]
