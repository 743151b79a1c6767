"""Torch datasets and samplers over a prepared cache (see :mod:`gliomaseg.io.cache`).

Knows arrays, not file formats: slices are read from memory-mapped ``image.npy``
``(Z, C, x, y)`` and ``label.npy`` ``(Z, x, y)``. Samples are addressed by
``(slice index, sample seed)`` keys produced by :class:`EpochSampler`, so the order of an
epoch and every sample's augmentation follow from ``(seed, epoch)`` alone: a resumed run sees
exactly the batches an uninterrupted run would, with any number of loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from gliomaseg.core.targets import TargetSpec
from gliomaseg.io.cache import load_index, open_case
from gliomaseg.models.inference import slice_with_context
from gliomaseg.models.resize import resize_labels, resize_slice
from gliomaseg.train.augment import AugmentConfig, augment, copy_modalities


@dataclass(frozen=True)
class SliceRef:
    """One axial slice of a prepared case."""

    case: int
    z: int
    tumour_pixels: int


class PreparedCases:
    """The cases of a prepared cache, opened lazily as memory maps (one set per process)."""

    def __init__(self, cache: str | Path, case_ids: Sequence[str]):
        self.cache = Path(cache)
        self.index = load_index(self.cache)
        known = {c["case_id"] for c in self.index["cases"]}
        missing = [c for c in case_ids if c not in known]
        if missing:
            raise ValueError(f"{self.cache}: cases {missing[:3]} are not in the cache index")
        self.case_ids = list(case_ids)
        self._open: dict[int, tuple[np.ndarray, np.ndarray | None, dict[str, Any]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in each worker rather than pickled.
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def get(self, case: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """(image (Z, C, x, y), label (Z, x, y) or None, metadata) of case number ``case``."""
        if case not in self._open:
            self._open[case] = open_case(self.cache, self.case_ids[case])
        return self._open[case]

    def slices(self, *, min_tumour_pixels: int = 0, tumour_only: bool = False) -> list[SliceRef]:
        """Every slice of every case, optionally only those with enough tumour."""
        out = []
        for i in range(len(self.case_ids)):
            _, _, meta = self.get(i)
            counts = meta["tumour_pixels"] or [0] * len(meta["brain_pixels"])
            for z, n in enumerate(counts):
                if tumour_only and n < max(min_tumour_pixels, 1):
                    continue
                out.append(SliceRef(i, z, int(n)))
        return out


def fit_to(
    array: np.ndarray, size: tuple[int, int], *, offset: tuple[int, int] | None = None
) -> np.ndarray:
    """Pad (centred, zeros) and crop the last two axes of ``array`` to ``size``.

    Args:
        array: (..., h, w).
        size: Target (H, W).
        offset: Top-left corner of the crop inside the padded array; None: centred.
    """
    h, w = array.shape[-2:]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph or pw:
        pad = [(0, 0)] * (array.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)]
        array = np.pad(array, pad)
    h, w = array.shape[-2:]
    oy, ox = offset if offset is not None else ((h - size[0]) // 2, (w - size[1]) // 2)
    oy, ox = min(max(oy, 0), h - size[0]), min(max(ox, 0), w - size[1])
    return array[..., oy : oy + size[0], ox : ox + size[1]]


class SliceDataset(Dataset[dict[str, torch.Tensor]]):
    """2D (or 2.5D) training samples from prepared cases.

    Keys are ``(slice position, sample seed)`` pairs; a plain int key means no augmentation.
    With ``input_scale < 1`` each slice (x, y) is first resized in-plane to about
    (x * s, y * s) (images antialiased bilinear, labels nearest; see :mod:`gliomaseg.models.resize`),
    then cropped or padded to ``size`` and augmented as at full resolution.
    Each sample is ``{"image": (C', H, W) float32, "target": softmax (H, W) int64 or sigmoid
    (K, H, W) float32, "label": (H, W) uint8 internal codes}``.
    """

    def __init__(
        self,
        cases: PreparedCases,
        slices: Sequence[SliceRef],
        *,
        target: TargetSpec,
        size: tuple[int, int],
        context: int = 0,
        channels: Sequence[int] | None = None,
        augment_config: AugmentConfig | None = None,
        input_scale: float = 1.0,
    ):
        self.cases = cases
        self.input_scale = input_scale
        self.channels = list(channels) if channels is not None else None
        self.slices = list(slices)
        self.target = target
        self.size = size
        self.context = context
        self.augment_config = augment_config or AugmentConfig()
        names = list(cases.index["modalities"])
        names = [names[c] for c in channels] if channels is not None else names
        self.n_modalities = len(names)
        self.copy_source = -1
        if self.augment_config.missing > 0:
            if self.augment_config.missing_source not in names:
                raise ValueError(
                    f"augment.missing_source '{self.augment_config.missing_source}' is not one "
                    f"of the model's modalities ({', '.join(names)}); name one of them"
                )
            self.copy_source = names.index(self.augment_config.missing_source)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        pos, seed = (key, None) if isinstance(key, int) else key
        ref = self.slices[pos]
        volume, labels, _ = self.cases.get(ref.case)
        image = slice_with_context(volume, ref.z, self.context, self.channels)
        label = (
            np.array(labels[ref.z]) if labels is not None else np.zeros(image.shape[1:], np.uint8)
        )
        image = resize_slice(image, self.input_scale)
        label = resize_labels(label, (image.shape[-2], image.shape[-1]))
        offset = None
        if seed is not None:
            rng = np.random.default_rng(seed)
            h, w = max(image.shape[-2], self.size[0]), max(image.shape[-1], self.size[1])
            offset = (
                int(rng.integers(0, h - self.size[0] + 1)),
                int(rng.integers(0, w - self.size[1] + 1)),
            )
            image, label = (
                fit_to(image, self.size, offset=offset),
                fit_to(label, self.size, offset=offset),
            )
            image = copy_modalities(
                image,
                modalities=self.n_modalities,
                source=self.copy_source,
                p=self.augment_config.missing,
                rng=rng,
            )
            image, label = augment(image, label, self.augment_config, rng)
        else:
            image, label = fit_to(image, self.size), fit_to(label, self.size)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(self.target.encode(label))),
            "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.uint8)),
        }


def group_weights(groups: Sequence[int] | np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Per-position sampling weights giving group ``g`` the share ``fractions[g]`` of draws.

    Within a group every position is equally likely; an empty group's share is dropped.
    """
    groups_arr = np.asarray(groups, dtype=np.int64)
    weights = np.zeros(groups_arr.size, dtype=np.float64)
    for g, share in enumerate(fractions):
        members = groups_arr == g
        if members.any():
            weights[members] = share / members.sum()
    return weights


class ConcatSlices(Dataset[dict[str, torch.Tensor]]):
    """Several slice datasets addressed as one: position ``p`` of the concatenation."""

    def __init__(self, parts: Sequence[SliceDataset]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        pos, seed = (key, None) if isinstance(key, int) else key
        part = int(np.searchsorted(self.offsets, pos, side="right") - 1)
        local = pos - int(self.offsets[part])
        return self.parts[part][local if seed is None else (local, seed)]


class PatchDataset(Dataset[dict[str, torch.Tensor]]):
    """3D patches ``(C, Z, H, W)`` from prepared cases, tumour-centred with some probability."""

    def __init__(
        self,
        cases: PreparedCases,
        *,
        target: TargetSpec,
        size: tuple[int, int, int],
        tumour_p: float = 0.5,
        flip: float = 0.0,
        channels: Sequence[int] | None = None,
    ):
        self.cases = cases
        self.channels = list(channels) if channels is not None else None
        self.target = target
        self.size = size
        self.tumour_p = tumour_p
        self.flip = flip

    def __len__(self) -> int:
        return len(self.cases.case_ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        pos, seed = (key, 0) if isinstance(key, int) else key
        rng = np.random.default_rng(seed)
        volume, labels, _ = self.cases.get(pos)
        zcxy = np.asarray(volume, dtype=np.float32)
        if self.channels is not None:
            zcxy = zcxy[:, self.channels]
        lab = (
            np.array(labels)
            if labels is not None
            else np.zeros((zcxy.shape[0], *zcxy.shape[2:]), np.uint8)
        )
        image = np.moveaxis(zcxy, 1, 0)  # (C, Z, x, y)
        image, lab = _pad_min(image, self.size), _pad_min(lab, self.size)
        start = self._start(lab, rng)
        box = tuple(slice(s, s + n) for s, n in zip(start, self.size, strict=True))
        image, lab = image[(slice(None), *box)], lab[box]
        for axis in (1, 2, 3):
            if self.flip > 0 and rng.random() < self.flip:
                image, lab = np.flip(image, axis), np.flip(lab, axis - 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "target": torch.from_numpy(np.ascontiguousarray(self.target.encode(lab))),
            "label": torch.from_numpy(np.ascontiguousarray(lab)),
        }

    def _start(self, lab: np.ndarray, rng: np.random.Generator) -> tuple[int, ...]:
        limits = [d - n for d, n in zip(lab.shape, self.size, strict=True)]
        tumour = np.argwhere(lab > 0)
        if tumour.size and rng.random() < self.tumour_p:
            centre = tumour[int(rng.integers(len(tumour)))]
            return tuple(
                int(np.clip(c - n // 2, 0, lim))
                for c, n, lim in zip(centre, self.size, limits, strict=True)
            )
        return tuple(int(rng.integers(0, lim + 1)) for lim in limits)


def _pad_min(array: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    lead = array.ndim - len(size)
    pads = [(0, 0)] * lead + [
        (0, max(n - d, 0)) for d, n in zip(array.shape[lead:], size, strict=True)
    ]
    return np.pad(array, pads) if any(p[1] for p in pads) else array


class EpochSampler(Sampler[tuple[int, int]]):
    """Deterministic epoch order with tumour oversampling, resumable mid-epoch, DDP-aware.

    An epoch is ``length`` keys ``(position, sample_seed)``; a fraction ``tumour_fraction`` of
    them are drawn from positions with tumour (when there are any), the rest uniformly from
    all, then shuffled; everything comes from ``np.random.default_rng([seed, epoch])``. With
    ``world_size > 1`` rank r takes keys r, r + world, ... of the same sequence. ``skip``
    drops the first keys (of this rank) to resume mid-epoch.

    ``groups`` (a group number per position) with ``group_fractions`` gives group ``g`` the
    share ``group_fractions[g]`` of both the tumour draws and the uniform draws, e.g. a lower
    share of each epoch to automatically labelled cases (:func:`group_weights`).
    """

    def __init__(
        self,
        has_tumour: Sequence[bool],
        *,
        length: int,
        seed: int,
        tumour_fraction: float | None = None,
        rank: int = 0,
        world_size: int = 1,
        groups: Sequence[int] | None = None,
        group_fractions: Sequence[float] | None = None,
    ):
        self.has_tumour = np.asarray(has_tumour, dtype=bool)
        if self.has_tumour.size == 0:
            raise ValueError("no training slices: check the cache and the tumour-slice filter")
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        self.group_fractions = list(group_fractions or [])
        if self.groups is not None and (
            self.groups.shape != self.has_tumour.shape
            or self.groups.min() < 0
            or self.groups.max() >= len(self.group_fractions)
            or min(self.group_fractions) < 0
            or sum(self.group_fractions) <= 0
        ):
            raise ValueError(
                "groups need one group number per position and group_fractions one "
                "non-negative share per group, not all zero"
            )
        self.length, self.seed = length, seed
        self.tumour_fraction = tumour_fraction
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        """Select the epoch to iterate, skipping its first ``skip`` keys of this rank."""
        self.epoch, self.skip = epoch, skip

    def keys(self, epoch: int) -> list[tuple[int, int]]:
        """All keys of one epoch, for all ranks."""
        rng = np.random.default_rng([self.seed, epoch])
        n = self.length
        tumour = np.flatnonzero(self.has_tumour)
        if self.groups is not None:
            n_t = round(self.tumour_fraction * n) if self.tumour_fraction and tumour.size else 0
            w_t = group_weights(self.groups[tumour], self.group_fractions)
            w_all = group_weights(self.groups, self.group_fractions)
            if w_t.sum() <= 0:
                n_t = 0
            picks = np.concatenate(
                [
                    rng.choice(tumour, n_t, p=w_t / w_t.sum()) if n_t else tumour[:0],
                    rng.choice(w_all.size, n - n_t, p=w_all / w_all.sum()),
                ]
            )
        elif self.tumour_fraction and tumour.size:
            n_t = round(self.tumour_fraction * n)
            picks = np.concatenate(
                [rng.choice(tumour, n_t), rng.integers(0, self.has_tumour.size, n - n_t)]
            )
        else:
            picks = rng.permutation(np.resize(np.arange(self.has_tumour.size), n))
        rng.shuffle(picks)
        seeds = rng.integers(0, 2**31 - 1, n)
        return [(int(p), int(s)) for p, s in zip(picks, seeds, strict=True)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        mine = self.keys(self.epoch)[self.rank :: self.world_size]
        return iter(mine[self.skip :])

    def __len__(self) -> int:
        return max(len(range(self.rank, self.length, self.world_size)) - self.skip, 0)
