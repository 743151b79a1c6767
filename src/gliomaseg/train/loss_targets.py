"""Target encodings for the losses (:mod:`gliomaseg.train.losses`): label maps of internal
codes (0 bg, 1 NCR/NET, 2 ED, 3 ET) as region, label or one-hot channels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gliomaseg.core.labels import ED, ET, NCR, REGIONS


def _label_map(labels: torch.Tensor) -> torch.Tensor:
    """Drop a singleton channel axis: ``(N, 1, *spatial)`` -> ``(N, *spatial)``."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be an integer tensor of internal codes, got {labels.dtype}; "
            "cast with labels.long() if the values are whole numbers"
        )
    if labels.ndim < 2:
        raise ValueError(f"labels must be (N, *spatial), got shape {tuple(labels.shape)}")
    return labels[:, 0] if labels.ndim > 2 and labels.shape[1] == 1 else labels


def _stack_channels(labels: torch.Tensor, code_sets: Sequence[Sequence[int]]) -> torch.Tensor:
    label_map = _label_map(labels)
    channels = [
        torch.isin(label_map, torch.tensor(codes, device=label_map.device)) for codes in code_sets
    ]
    return torch.stack(channels, dim=1).float()


def region_targets(
    labels: torch.Tensor, regions: Sequence[str] = ("WT", "TC", "ET")
) -> torch.Tensor:
    """Overlapping BraTS region channels from internal codes, for sigmoid losses.

    Args:
        labels: Integer internal codes (0 bg, 1 NCR/NET, 2 ED, 3 ET), ``(N, *spatial)`` or
            ``(N, 1, *spatial)`` (a singleton axis 1 is taken as the channel axis).
        regions: Names from :data:`gliomaseg.core.labels.REGIONS`: WT = {1, 2, 3}, TC = {1, 3},
            ET = {3}. ``("WT",)`` gives a binary tumour mask (also for LGG, tumour = 1).

    Returns:
        float32 ``(N, len(regions), *spatial)`` of 0/1; all zeros for an empty label map.

    Raises:
        ValueError: unknown region name, or labels that are not integer.
    """
    unknown = [r for r in regions if r not in REGIONS]
    if unknown or not regions:
        raise ValueError(f"unknown region(s) {unknown}; choose from {sorted(REGIONS)}")
    return _stack_channels(labels, [REGIONS[r] for r in regions])


def channel_targets(labels: torch.Tensor, codes: Sequence[int] = (NCR, ED, ET)) -> torch.Tensor:
    """One channel per internal code (disjoint), for sigmoid losses on NCR/NET, ED, ET.

    Args:
        labels: Integer internal codes ``(N, *spatial)`` or ``(N, 1, *spatial)``.
        codes: Internal code of each output channel.

    Returns:
        float32 ``(N, len(codes), *spatial)``; channel k is ``labels == codes[k]``.
    """
    if not codes:
        raise ValueError("codes must name at least one internal label, e.g. (1, 2, 3)")
    return _stack_channels(labels, [(int(c),) for c in codes])


def onehot_targets(labels: torch.Tensor, num_classes: int = 4) -> torch.Tensor:
    """One-hot encoding of a class map, background included.

    Args:
        labels: Integer classes ``(N, *spatial)`` or ``(N, 1, *spatial)`` in
            ``[0, num_classes)``.
        num_classes: Number of classes (4 for internal codes 0-3).

    Returns:
        float32 ``(N, num_classes, *spatial)``.

    Raises:
        ValueError: a label outside ``[0, num_classes)``.
    """
    label_map = _label_map(labels).long()
    if label_map.numel() and (int(label_map.min()) < 0 or int(label_map.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}], found [{int(label_map.min())}, "
            f"{int(label_map.max())}]; raise num_classes or encode the labels first"
        )
    return F.one_hot(label_map, num_classes).movedim(-1, 1).float()


__all__ = ["channel_targets", "onehot_targets", "region_targets"]
