"""Segmentation losses built from a :class:`LossConfig`, and the target encodings they take.

Every loss is called as ``loss(logits, target)`` on raw network outputs and returns a scalar.
Two families, by how the channels of the logits relate:

=============  ==========  =================================================================
name           activation  terms (weights)
=============  ==========  =================================================================
ce             softmax     cross-entropy
dice           softmax*    soft Dice
dice_ce        softmax     ``lambda_dice`` * Dice + ``lambda_ce`` * cross-entropy
dice_focal     softmax*    ``lambda_dice`` * Dice + ``lambda_focal`` * focal
bce            sigmoid     binary cross-entropy
dice_bce       sigmoid     ``lambda_dice`` * Dice + ``lambda_ce`` * BCE
bce_iou        sigmoid     ``lambda_ce`` * BCE + ``lambda_iou`` * soft Jaccard (IoU)
=============  ==========  =================================================================

\\* ``sigmoid=True`` switches ``dice`` and ``dice_focal`` to sigmoid (multi-label) channels.

Softmax losses take an integer class map ``(N, *spatial)`` or ``(N, 1, *spatial)`` (internal
codes 0-3, or 0/1 for a binary task with 2 channels). Sigmoid losses take float 0/1 channels
``(N, K, *spatial)`` shaped like the logits: :func:`~gliomaseg.train.loss_targets.region_targets` (WT/TC/ET),
:func:`~gliomaseg.train.loss_targets.channel_targets` (NCR/NET, ED, ET) or a binary mask (K=1; ``(N, *spatial)`` accepted).

The terms are MONAI's ``DiceLoss`` (``jaccard=True`` for IoU) and ``FocalLoss`` plus torch's
cross-entropies, combined here rather than with MONAI's ``DiceCELoss``/``DiceFocalLoss``:
in MONAI 1.6 ``DiceCELoss(sigmoid=True)`` on more than one channel uses softmax
cross-entropy (wrong for overlapping regions), and ``DiceFocalLoss(softmax=True)`` uses a
sigmoid focal term.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gliomaseg.core.config import from_dict

#: Loss names accepted by :class:`LossConfig`.
LOSS_NAMES: tuple[str, ...] = ("ce", "dice", "dice_ce", "dice_focal", "bce", "dice_bce", "bce_iou")
_SOFTMAX_ONLY = frozenset({"ce", "dice_ce"})
_SIGMOID_ONLY = frozenset({"bce", "dice_bce", "bce_iou"})


@dataclass(frozen=True)
class LossConfig:
    """Loss settings (saved with a run's ``config.json``).

    Attributes:
        name: One of :data:`LOSS_NAMES` (see the module table).
        sigmoid: Channel activation. None (default) takes the name's: sigmoid for the
            ``bce`` names, softmax otherwise. True is allowed for ``dice`` and ``dice_focal``;
            contradicting the name (``ce`` with sigmoid, ``bce`` with softmax) is an error.
            Resolved to a bool at construction, so saved configs are explicit.
        class_weights: One non-negative weight per logit channel (background included for
            softmax), scaling that channel's cross-entropy/BCE, Dice and focal terms; None
            for equal weights.
        include_background: Softmax only: False leaves class 0 out of the Dice term
            (cross-entropy and focal always cover every class), usually better when tumour is
            small. Sigmoid channels have no background, so False is an error there.
        smooth: Added to the numerator and denominator of Dice/IoU (> 0 keeps them defined
            when a class is absent from both prediction and target: loss 0 there).
        batch_dice: Sum Dice/IoU over the whole batch before dividing (nnU-Net does so for
            2D, where many slices hold no tumour); False gives one value per sample, averaged.
        lambda_dice: Weight of the Dice term in ``dice_ce``, ``dice_bce``, ``dice_focal``.
        lambda_ce: Weight of the (binary) cross-entropy term in ``dice_ce``, ``dice_bce``,
            ``bce_iou``.
        lambda_iou: Weight of the soft Jaccard term in ``bce_iou``.
        lambda_focal: Weight of the focal term in ``dice_focal``.
        gamma: Focal-loss focusing parameter (0 gives cross-entropy, averaged over channels).

    Single-term losses (``ce``, ``dice``, ``bce``) ignore the lambdas.

    Raises:
        ValueError: at construction, naming the invalid field and the fix.
    """

    name: str = "dice_ce"
    sigmoid: bool | None = None
    class_weights: tuple[float, ...] | None = None
    include_background: bool = True
    smooth: float = 1e-5
    batch_dice: bool = True
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    lambda_iou: float = 1.0
    lambda_focal: float = 1.0
    gamma: float = 2.0

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise ValueError(f"loss name must be one of {list(LOSS_NAMES)}, got {self.name!r}")
        sigmoid = self.name in _SIGMOID_ONLY if self.sigmoid is None else self.sigmoid
        if not isinstance(sigmoid, bool):
            raise ValueError(f"sigmoid must be true, false or null, got {self.sigmoid!r}")
        if sigmoid and self.name in _SOFTMAX_ONLY:
            raise ValueError(
                f"loss {self.name!r} is softmax only; for sigmoid use 'bce'/'dice_bce'"
            )
        if not sigmoid and self.name in _SIGMOID_ONLY:
            raise ValueError(f"loss {self.name!r} is sigmoid only; for softmax use 'ce'/'dice_ce'")
        object.__setattr__(self, "sigmoid", sigmoid)
        if sigmoid and not self.include_background:
            raise ValueError(
                "include_background=False drops channel 0, but sigmoid channels have no "
                "background (channel 0 is e.g. WT); keep include_background=True"
            )
        for flag in ("include_background", "batch_dice"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", _weights(self.class_weights))
        if _number("smooth", self.smooth) <= 0:
            raise ValueError(f"smooth must be > 0 (e.g. 1e-5), got {self.smooth!r}")
        for field in ("lambda_dice", "lambda_ce", "lambda_iou", "lambda_focal", "gamma"):
            if _number(field, getattr(self, field)) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)!r}")
        if all(w == 0 for w, _ in _term_specs(self)):
            raise ValueError(f"every term of {self.name!r} has weight 0; raise one lambda")

    @property
    def activation(self) -> str:
        """``"sigmoid"`` or ``"softmax"``: must match the model's ``head``."""
        return "sigmoid" if self.sigmoid else "softmax"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        if self.class_weights is not None:
            data["class_weights"] = list(self.class_weights)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        """Rebuild a config from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ValueError: unknown keys (named, with the known ones) or invalid values.
        """
        return from_dict(cls, data, what="loss config", tuples=("class_weights",))


def _weights(value: object) -> tuple[float, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"class_weights must be a list with one weight per channel, got {value!r}")
    weights = tuple(_number(f"class_weights[{i}]", w) for i, w in enumerate(value))
    if not weights or min(weights) < 0 or max(weights) == 0:
        raise ValueError(f"class_weights must be non-negative, not all zero, got {value!r}")
    return weights


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field} must be a number, got {value!r}")
    return float(value)


# -- terms ------------------------------------------------------------------------------------


class _CrossEntropy(nn.Module):
    """Softmax cross-entropy on a ``(N, 1, *spatial)`` class map."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.weight: torch.Tensor | None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target[:, 0], weight=self.weight)


class _BinaryCrossEntropy(nn.Module):
    """Mean BCE with logits over every element, each channel scaled by its weight."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.weight: torch.Tensor | None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None
        if self.weight is not None:
            weight = self.weight.view(1, -1, *([1] * (logits.ndim - 2)))
        return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def _term_specs(config: LossConfig) -> list[tuple[float, str]]:
    """(weight, term) pairs of a loss; terms are ce, bce, dice, iou, focal."""
    return {
        "ce": [(1.0, "ce")],
        "dice": [(1.0, "dice")],
        "dice_ce": [(config.lambda_dice, "dice"), (config.lambda_ce, "ce")],
        "dice_focal": [(config.lambda_dice, "dice"), (config.lambda_focal, "focal")],
        "bce": [(1.0, "bce")],
        "dice_bce": [(config.lambda_dice, "dice"), (config.lambda_ce, "bce")],
        "bce_iou": [(config.lambda_ce, "bce"), (config.lambda_iou, "iou")],
    }[config.name]


def _make_term(config: LossConfig, term: str) -> nn.Module:
    from monai.losses import DiceLoss, FocalLoss

    softmax = not config.sigmoid
    weights = None if config.class_weights is None else torch.tensor(config.class_weights)
    # MONAI wants one Dice/focal weight per channel it keeps.
    kept = weights if weights is None or config.include_background else weights[1:]
    if term == "ce":
        return _CrossEntropy(weights)
    if term == "bce":
        return _BinaryCrossEntropy(weights)
    if term == "focal":
        # Always every class: with include_background=False MONAI's softmax focal would
        # normalise over the foreground channels only.
        return FocalLoss(
            include_background=True,
            to_onehot_y=softmax,
            gamma=config.gamma,
            weight=weights,
            use_softmax=softmax,
        )
    return DiceLoss(
        include_background=config.include_background,
        to_onehot_y=softmax,
        softmax=softmax,
        sigmoid=not softmax,
        jaccard=term == "iou",
        smooth_nr=config.smooth,
        smooth_dr=config.smooth,
        batch=config.batch_dice,
        weight=kept,
    )


class SegmentationLoss(nn.Module):
    """Weighted sum of loss terms, with the target checked and brought to one form first.

    Attributes:
        config: The :class:`LossConfig` it was built from.
        terms: The term modules; ``weights`` their factors.
    """

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config
        specs = _term_specs(config)
        self.weights = [w for w, _ in specs]
        self.terms = nn.ModuleList(_make_term(config, term) for _, term in specs)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            logits: Raw network output ``(N, C, *spatial)``, float.
            target: Softmax losses: integer classes ``(N, *spatial)`` or ``(N, 1, *spatial)``
                with values in ``[0, C)``. Sigmoid losses: values in [0, 1] shaped like
                ``logits`` (or ``(N, *spatial)`` when ``C == 1``).

        Returns:
            Scalar loss (mean over batch, channels and voxels as each term defines).

        Raises:
            ValueError: target shape or values that do not fit the logits, or
                ``class_weights`` of the wrong length; the message says how to convert.
        """
        if logits.ndim < 3:
            raise ValueError(f"logits must be (N, C, *spatial), got shape {tuple(logits.shape)}")
        weights = self.config.class_weights
        if weights is not None and len(weights) != logits.shape[1]:
            raise ValueError(
                f"class_weights has {len(weights)} entries but the logits have "
                f"{logits.shape[1]} channels; give one weight per channel"
            )
        if self.config.sigmoid:
            target = _sigmoid_target(logits, target)
        else:
            target = _softmax_target(logits, target)
        total = logits.new_zeros(())
        for weight, term in zip(self.weights, self.terms, strict=True):
            if weight:
                total = total + weight * term(logits, target)
        return total


def _softmax_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Integer class map as ``(N, 1, *spatial)`` int64, checked against the logits."""
    n_classes = logits.shape[1]
    if n_classes < 2:
        raise ValueError(
            "softmax losses need >= 2 logit channels; for a binary mask use out_channels=2 "
            "(background + tumour) or a sigmoid loss ('bce', 'dice_bce', 'bce_iou')"
        )
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    expected = (logits.shape[0], 1, *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"softmax losses take a class map (N, *spatial) or (N, 1, *spatial) matching logits "
            f"{tuple(logits.shape)}, got target {tuple(target.shape)}; for region/label "
            "channels use a sigmoid loss, for a one-hot target pass target.argmax(1)"
        )
    if target.is_floating_point() and not torch.equal(target, target.round()):
        raise ValueError("softmax targets must hold integer class indices, found fractions")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
        raise ValueError(
            f"target classes must lie in [0, {n_classes - 1}] for {n_classes} logit channels, "
            f"found [{int(target.min())}, {int(target.max())}]; check out_channels or the labels"
        )
    return target.long()


def _sigmoid_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Float channels shaped like the logits, checked to lie in [0, 1]."""
    if logits.shape[1] == 1 and target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape != logits.shape:
        raise ValueError(
            f"sigmoid losses take one 0/1 target channel per logit channel, shape "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}; convert a label map with "
            "gliomaseg.train.loss_targets.region_targets (WT/TC/ET) or channel_targets (NCR/NET, ED, ET)"
        )
    target = target.to(logits.dtype)
    if target.numel() and (float(target.min()) < 0 or float(target.max()) > 1):
        raise ValueError(
            f"sigmoid targets must lie in [0, 1], found [{float(target.min()):g}, "
            f"{float(target.max()):g}]: a label map? convert it with region_targets or "
            "channel_targets"
        )
    return target


def build_loss(config: LossConfig | Mapping[str, Any]) -> SegmentationLoss:
    """Build the loss a config describes.

    Args:
        config: A :class:`LossConfig` or its :meth:`~LossConfig.to_dict` form.

    Returns:
        A module called as ``loss(logits, target)`` returning a scalar; see
        :meth:`SegmentationLoss.forward` for the target forms.
    """
    cfg = config if isinstance(config, LossConfig) else LossConfig.from_dict(config)
    return SegmentationLoss(cfg)


__all__ = [
    "LOSS_NAMES",
    "LossConfig",
    "SegmentationLoss",
    "build_loss",
]
