"""A convolutional autoencoder of 2D tumour masks, and the latent space it learns.

``gliomaseg autoencoder train`` learns to squeeze each axial whole-tumour mask into a short
vector (64 numbers by default, 128 optional) and back; ``gliomaseg autoencoder embed`` writes
those vectors per slice and per case, a PCA plot of them, and how the first principal
components relate to the tumour's size and irregularity.

Masks (:func:`load_masks`): every axial slice (axis 2 of the canonical RAS+ arrays) holding
whole tumour (label > 0), from a prepared cache (``label.npy``) or from any folder
:func:`~gliomaseg.io.layouts.find_cases` reads (labelled cases or label-only segmentations).
Each slice is resampled onto a ``size`` x ``size`` grid of ``pixel_mm`` pixels (default
:data:`FIELD_OF_VIEW_MM` / size: 3.75 mm at 64, 1.875 mm at 128) centred on the brain's
bounding box (the field of view's centre without images; a prepared cache is already cropped
to the brain), by linear interpolation of the 0/1 mask thresholded at 0.5. A fixed physical
pixel keeps the tumour's real size and position in the mask, so the same tumour gives the same
mask whatever the scanner grid. Slices whose tumour covers fewer than ``min_pixels`` pixels
after resampling are skipped. Size (area, mm²) and irregularity (1 - solidity) are measured
on the original slice, before resampling.

Network (:func:`build_autoencoder`): ``log2(size) - 2`` levels of two 3x3 convolutions (the
first with stride 2) down to 4 x 4, a linear layer to the latent vector, and the mirror image
with transposed convolutions back to one logit per pixel. It is a ``torch.nn.ModuleDict`` of
``encoder`` and ``decoder`` ``Sequential`` s, so this module imports torch only when used.
Loss: Dice + binary cross-entropy (:func:`gliomaseg.train.losses.build_loss`), Adam at a constant
learning rate.

Training uses the segmentation loop's machinery: batches drawn by
:class:`~gliomaseg.train.datasets.EpochSampler` (a pure function of ``(seed, epoch)``, skipping what was
done on resume), atomic ``checkpoints/{last,best}.pt`` (``weights_only=True``), ``metrics.csv``
and the progress bar. ``RUN/masks.npz`` keeps the training masks so a resume sees exactly the
same data; ``--resume RUN --epochs N`` continues (or extends) a run and ends with the weights an
uninterrupted run of N epochs has. About a tenth of the patients (at least five needed) are
held out; their mean per-slice reconstruction Dice is ``dice_mean`` in ``metrics.csv`` and
selects ``best.pt``.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.errors import EXIT_BAD_INPUT, EXIT_OK, one_line
from gliomaseg.io.atomic import write_json_atomic, write_text_atomic, write_with

if TYPE_CHECKING:
    import torch

    from gliomaseg.core.case import Case
    from gliomaseg.train.runs import RunState

log = logging.getLogger(__name__)

#: Field of view (mm) the default mask grid covers: the BraTS grid's 240 mm.
FIELD_OF_VIEW_MM = 240.0
#: Checkpoint ``kind`` of an autoencoder run.
KIND = "mask-autoencoder"


@dataclass(frozen=True)
class AutoencoderConfig:
    """Everything an autoencoder run depends on (saved as ``RUN/config.json``).

    Attributes:
        size: Mask grid side, pixels: a power of two from 16 to 256 (64 default, 128 finer).
        latent: Length of the latent vector (64 default; 128 optional).
        pixel_mm: Pixel size of the mask grid, mm; None: :data:`FIELD_OF_VIEW_MM` / size.
        min_pixels: Slices with fewer tumour pixels on the mask grid are skipped.
        base_channels: Channels of the first level; doubled per level up to ``max_channels``.
        max_channels: Cap on the channels of a level.
        epochs, steps_per_epoch, batch_size: Schedule; an epoch is a fixed number of steps.
        lr: Adam learning rate (constant).
        flip: Flip half of the training masks left-right (tumours occur on either side).
        val_fraction: Share of patients held out for validation (none with < 5 patients).
        seed: Seeds the weights, the batches, the flips and the validation split.
        device: ``auto``, ``cpu`` or ``cuda``.
        save_every_steps: Also checkpoint every N steps inside an epoch (0: epoch ends only).
    """

    size: int = 64
    latent: int = 64
    pixel_mm: float | None = None
    min_pixels: int = 4
    base_channels: int = 16
    max_channels: int = 128
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    flip: bool = True
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    save_every_steps: int = 0

    def __post_init__(self) -> None:
        if self.size not in (16, 32, 64, 128, 256):
            raise ValueError(f"size {self.size} must be a power of two from 16 to 256 (64, 128)")
        if not 2 <= self.latent <= 4096:
            raise ValueError(f"latent {self.latent} must be 2-4096 (64 default, 128 optional)")
        if min(self.epochs, self.steps_per_epoch, self.batch_size, self.base_channels) < 1:
            raise ValueError("epochs, steps_per_epoch, batch_size and base_channels must be >= 1")
        if self.pixel_mm is not None and not self.pixel_mm > 0:
            raise ValueError(f"pixel_mm must be > 0 mm, got {self.pixel_mm}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device '{self.device}' must be auto, cpu or cuda")

    @property
    def grid_mm(self) -> float:
        """Pixel size of the mask grid, mm."""
        return self.pixel_mm if self.pixel_mm is not None else FIELD_OF_VIEW_MM / self.size

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each encoder level (the grid halves at each, down to 4 x 4)."""
        levels = int(math.log2(self.size)) - 2
        return tuple(min(self.base_channels * 2**i, self.max_channels) for i in range(levels))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoencoderConfig:
        """Build from a dict; unknown keys are an error naming them."""
        from gliomaseg.core.config import from_dict

        return from_dict(cls, data, what="autoencoder option")


# --------------------------------------------------------------------------- masks


@dataclass
class MaskSet:
    """2D tumour masks on the autoencoder's grid, with where each came from.

    Attributes:
        masks: (N, size, size) uint8 0/1 (axis 0 = canonical x, Right->Left is increasing).
        case_ids: (N,) case of each mask.
        slice_index: (N,) axial index of each mask in its case's original (uncropped) grid.
        area_mm2: (N,) whole-tumour area of the original slice, mm².
        irregularity: (N,) 1 - solidity of the original slice's tumour, 0-1.
        patients: (N,) patient of each mask (validation splits keep patients together).
    """

    masks: NDArray[np.uint8]
    case_ids: NDArray[np.str_]
    slice_index: NDArray[np.int64]
    area_mm2: NDArray[np.float64]
    irregularity: NDArray[np.float64]
    patients: NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @classmethod
    def from_arrays(
        cls,
        masks: NDArray[Any],
        *,
        case_ids: Sequence[str] | None = None,
        spacing: Sequence[float] = (1.0, 1.0),
    ) -> MaskSet:
        """Masks already on the grid (N, S, S); each is its own case unless ids are given."""
        from gliomaseg.explain.features import solidity_2d

        arr = (np.asarray(masks) > 0).astype(np.uint8)
        if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
            raise ValueError(f"masks must be (N, S, S), got shape {arr.shape}")
        ids = np.asarray(
            [f"mask_{i:05d}" for i in range(len(arr))] if case_ids is None else list(case_ids)
        )
        return cls(
            masks=arr,
            case_ids=ids,
            slice_index=np.zeros(len(arr), dtype=np.int64),
            area_mm2=arr.reshape(len(arr), -1).sum(1) * float(spacing[0] * spacing[1]),
            irregularity=np.array([1.0 - solidity_2d(m > 0) if m.any() else 0.0 for m in arr]),
            patients=ids.copy(),
        )

    def subset(self, index: NDArray[np.integer]) -> MaskSet:
        """The masks at ``index``."""
        return MaskSet(
            self.masks[index],
            self.case_ids[index],
            self.slice_index[index],
            self.area_mm2[index],
            self.irregularity[index],
            self.patients[index],
        )

    def save(self, path: str | Path) -> None:
        """Write to a compressed ``.npz`` (masks bit-packed), atomically."""
        arrays = {
            "bits": np.packbits(self.masks.astype(bool), axis=None),
            "shape": np.asarray(self.masks.shape),
            "case_ids": self.case_ids,
            "slice_index": self.slice_index,
            "area_mm2": self.area_mm2,
            "irregularity": self.irregularity,
            "patients": self.patients,
        }
        write_with(path, lambda tmp: np.savez_compressed(tmp, **arrays))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> MaskSet:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            shape = tuple(int(s) for s in data["shape"])
            bits = np.unpackbits(data["bits"], count=int(np.prod(shape)))
            return cls(
                bits.reshape(shape).astype(np.uint8),
                data["case_ids"],
                data["slice_index"],
                data["area_mm2"],
                data["irregularity"],
                data["patients"],
            )


def fit_mask(
    plane: NDArray[Any],
    *,
    spacing: Sequence[float],
    size: int,
    pixel_mm: float,
    centre: Sequence[float] | None = None,
) -> NDArray[np.uint8]:
    """Resample a 2D mask onto a ``size`` x ``size`` grid of ``pixel_mm`` pixels.

    Args:
        plane: (X, Y) mask; non-zero is tumour.
        spacing: Pixel size (mm) of ``plane`` along its two axes.
        size: Output side, pixels.
        pixel_mm: Output pixel size, mm.
        centre: Index (fractional) of ``plane`` that lands on the output's centre; default
            the centre of ``plane``.

    Returns:
        (size, size) uint8 0/1: linear interpolation of the 0/1 mask at the output pixel
        centres, >= 0.5. Parts outside ``plane`` are background; parts beyond the output
        grid are cut off.
    """
    from scipy import ndimage

    arr = np.asarray(plane) > 0
    mid = (np.asarray(arr.shape, dtype=np.float64) - 1) / 2 if centre is None else centre
    offsets = (np.arange(size, dtype=np.float64) - (size - 1) / 2) * pixel_mm
    coords = np.meshgrid(
        mid[0] + offsets / float(spacing[0]), mid[1] + offsets / float(spacing[1]), indexing="ij"
    )
    values = ndimage.map_coordinates(arr.astype(np.float32), coords, order=1, mode="constant")
    return (values >= 0.5).astype(np.uint8)


#: One tumour slice before resampling: case id, patient, slice index, mask, spacing, centre.
_Plane = tuple[str, str, int, NDArray[np.bool_], tuple[float, float], tuple[float, float] | None]


def load_masks(
    source: str | Path, *, config: AutoencoderConfig
) -> tuple[MaskSet, list[tuple[str, str]]]:
    """Axial whole-tumour masks of a prepared cache or a folder of cases/segmentations.

    Args:
        source: Prepared cache (has ``index.json``) or anything ``find_cases`` reads.
        config: Grid (``size``, ``grid_mm``) and ``min_pixels``.

    Returns:
        The masks (see the module docstring) and (path, one-line reason) for every case that
        could not be read or had no label; those are skipped.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: no tumour mask found at all.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such cache or folder; check --masks")
    failures: list[tuple[str, str]] = []
    # Planes are streamed and resampled one at a time: full-size slices never pile up.
    if (path / "index.json").exists():
        out = _fit_planes(_cache_planes(path), config)
    else:
        out = _fit_planes(_case_planes(path, failures), config)
    if not len(out):
        raise ValueError(
            f"{path}: no axial tumour mask of at least {config.min_pixels} pixels on the "
            f"{config.size}x{config.size} grid; pass labelled cases or segmentations"
        )
    return out, failures


def _cache_planes(cache: Path) -> Iterator[_Plane]:
    from gliomaseg.core.geometry import reorient
    from gliomaseg.io.cache import NETWORK_AXES, case_axes, load_index, open_case

    for entry in load_index(cache)["cases"]:
        _, label, meta = open_case(cache, entry["case_id"])
        if label is None:
            continue
        sx, sy = (float(s) for s in meta["spacing_mm"][:2])
        axes = case_axes(meta)  # older LGG caches: TIFF order (in-plane turn, same slices)
        if axes != NETWORK_AXES:
            label = reorient(np.moveaxis(np.asarray(label), 0, -1), axes, NETWORK_AXES)
            label = np.moveaxis(label, -1, 0)
        z0 = int(meta.get("crop", {}).get("start", [0, 0, 0])[2])  # back to the original index
        patient = str(entry.get("patient") or entry["case_id"])
        for z in np.flatnonzero(np.asarray(label).reshape(len(label), -1).any(axis=1)):
            plane = np.asarray(label[z]) > 0
            yield entry["case_id"], patient, z0 + int(z), plane, (sx, sy), None


def _case_planes(folder: Path, failures: list[tuple[str, str]]) -> Iterator[_Plane]:
    """Tumour slices of every case under ``folder``; unreadable cases go to ``failures``."""
    from gliomaseg.io.layouts import read_case

    refs, found_failures = _find_refs(folder)
    failures += found_failures
    for ref in refs:
        try:
            case = read_case(ref)
        except (ValueError, FileNotFoundError, OSError) as err:
            failures.append((str(ref.path), one_line(err)))
            continue
        if case.label is None:
            failures.append((str(ref.path), "no label map; pass labelled cases or segmentations"))
            continue
        centre = _brain_centre(case)
        sx, sy, _ = case.spacing
        patient = case.meta.get("patient") or case.case_id
        for z in np.flatnonzero(case.label.any(axis=(0, 1))):
            yield case.case_id, patient, int(z), case.label[:, :, z] > 0, (sx, sy), centre


def _find_refs(path: Path) -> tuple[list[Any], list[tuple[str, str]]]:
    """Cases under ``path``; an entry that breaks discovery is reported, the others found."""
    from gliomaseg.io.layouts import discover

    refs, bad = discover(path)
    return list(refs), [(str(p), msg) for p, msg in bad]


def _brain_centre(case: Case) -> tuple[float, float] | None:
    brain = case.brain_mask
    if brain is None and case.image is not None:
        brain = np.any(case.image != 0, axis=0)
    if brain is None or not brain.any():
        return None
    idx = [np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != k))) for k in (0, 1)]
    return (idx[0][0] + idx[0][-1]) / 2.0, (idx[1][0] + idx[1][-1]) / 2.0


def _fit_planes(planes: Iterable[_Plane], config: AutoencoderConfig) -> MaskSet:
    from gliomaseg.explain.features import solidity_2d

    keep = []
    for case_id, patient, z, plane, spacing, centre in planes:
        fitted = fit_mask(
            plane, spacing=spacing, size=config.size, pixel_mm=config.grid_mm, centre=centre
        )
        if int(fitted.sum()) >= config.min_pixels:
            area = float(plane.sum()) * spacing[0] * spacing[1]
            keep.append((fitted, case_id, z, area, 1.0 - solidity_2d(plane), patient))
    empty = np.zeros((0, config.size, config.size), dtype=np.uint8)
    return MaskSet(
        masks=np.stack([k[0] for k in keep]) if keep else empty,
        case_ids=np.asarray([k[1] for k in keep], dtype=str),
        slice_index=np.asarray([k[2] for k in keep], dtype=np.int64),
        area_mm2=np.asarray([k[3] for k in keep], dtype=np.float64),
        irregularity=np.asarray([k[4] for k in keep], dtype=np.float64),
        patients=np.asarray([k[5] for k in keep], dtype=str),
    )


# --------------------------------------------------------------------------- network


def build_autoencoder(config: AutoencoderConfig) -> torch.nn.ModuleDict:
    """The network of a config: ``{"encoder": (N,1,S,S) -> (N,L), "decoder": (N,L) -> logits}``.

    The decoder returns (N, 1, S, S) logits (sigmoid > 0.5, i.e. logit > 0, is tumour).
    """
    from torch import nn

    chans = config.channels
    enc: list[nn.Module] = []
    cin = 1
    for c in chans:
        enc += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
        enc += [nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.1)]
        cin = c
    enc += [nn.Flatten(), nn.Linear(cin * 16, config.latent)]
    dec: list[nn.Module] = [nn.Linear(config.latent, cin * 16), nn.LeakyReLU(0.1)]
    dec.append(nn.Unflatten(1, (cin, 4, 4)))
    rev = list(reversed(chans))
    for c_in, c_out in zip(rev, [*rev[1:], rev[-1]], strict=True):
        dec += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.1)]
        dec += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.1)]
    dec.append(nn.Conv2d(rev[-1], 1, 1))
    return nn.ModuleDict({"encoder": nn.Sequential(*enc), "decoder": nn.Sequential(*dec)})


def _tensor(masks: NDArray[Any], device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None].to(device)


def encode(
    model: torch.nn.ModuleDict, masks: NDArray[Any], *, batch_size: int = 256
) -> NDArray[np.float32]:
    """Latent vectors (N, L) float32 of (N, S, S) masks on the model's grid."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(masks), batch_size):
            x = _tensor(masks[start : start + batch_size], device)
            out.append(model["encoder"](x).float().cpu().numpy())
    if out:
        return np.concatenate(out)
    linear = next(m for m in model["decoder"].modules() if isinstance(m, torch.nn.Linear))
    return np.zeros((0, linear.in_features), dtype=np.float32)


def reconstruct(
    model: torch.nn.ModuleDict, masks: NDArray[Any], *, batch_size: int = 256
) -> NDArray[np.uint8]:
    """Reconstructed (N, S, S) uint8 0/1 masks (decoder logit > 0)."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(masks), batch_size):
            x = _tensor(masks[start : start + batch_size], device)
            logits = model["decoder"](model["encoder"](x))
            out.append((logits[:, 0] > 0).cpu().numpy().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros_like(np.asarray(masks), dtype=np.uint8)


def dice_per_mask(pred: NDArray[Any], ref: NDArray[Any]) -> NDArray[np.float64]:
    """Dice of each pair of (N, S, S) masks; 1 when both are empty."""
    p = np.asarray(pred, dtype=bool).reshape(len(pred), -1)
    r = np.asarray(ref, dtype=bool).reshape(len(ref), -1)
    inter = (p & r).sum(1)
    total = p.sum(1) + r.sum(1)
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)


# --------------------------------------------------------------------------- training


def train_autoencoder(
    config: AutoencoderConfig | None,
    masks: MaskSet | str | Path | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    epochs: int | None = None,
    source: str | None = None,
    progress: bool = True,
) -> RunState:
    """Train (or resume) an autoencoder run; returns the final run state.

    Args:
        config: Settings; None when resuming (the run's own are used).
        masks: A :class:`MaskSet`, or a cache/folder for :func:`load_masks`; None on resume.
        run_dir: Run folder (``config.json``, ``masks.npz``, ``metrics.csv``, ``curves.png``,
            ``checkpoints/{last,best}.pt``).
        resume: Continue the run in ``run_dir`` from ``checkpoints/last.pt`` exactly.
        epochs: On resume, a new total number of epochs (extends a finished run).
        source: Where the masks came from, recorded in the run (default: ``masks`` when it
            is a path).
        progress: Show the progress bar on stderr.

    Raises:
        ValueError: a bad config, no masks, a corrupt checkpoint, or an existing run folder
            without ``resume``.
    """
    import torch

    from gliomaseg.models.checkpoint import load_checkpoint
    from gliomaseg.train.losses import build_loss
    from gliomaseg.train.runs import RunState, TrainingProgress, resolve_device

    run = Path(run_dir)
    last = run / "checkpoints" / "last.pt"
    ckpt: dict[str, Any] = {}
    if resume:
        ckpt = _own_checkpoint(load_checkpoint(last), last)
        config = AutoencoderConfig.from_dict(ckpt["train_config"])
        config = replace(config, epochs=epochs) if epochs is not None else config
        data, source = MaskSet.load(run / "masks.npz"), str(ckpt.get("data", ""))
    else:
        if last.exists():
            raise ValueError(f"{run}: holds a run already; pass --resume {run} or another -o")
        if config is None or masks is None:
            raise ValueError("autoencoder training needs a config and masks unless resuming")
        data = masks if isinstance(masks, MaskSet) else _load_or_fail(masks, config)
        source = source or ("in-memory masks" if isinstance(masks, MaskSet) else str(masks))
        run.mkdir(parents=True, exist_ok=True)
        data.save(run / "masks.npz")
    write_json_atomic(run / "config.json", {**config.to_dict(), "data": source})
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_autoencoder(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    state = RunState()
    if resume:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = RunState(**ckpt["state"])
        torch.set_rng_state(ckpt["torch_rng"])
    train_idx, val_idx = split_patients(data.patients, config.val_fraction, seed=config.seed)
    meta = {
        "kind": KIND,
        "model_config": config.to_dict(),
        "train_config": config.to_dict(),
        "data": source,
        "preprocessing": _preprocessing(config),
    }
    loop = _Loop(model, optimizer, build_loss({"name": "dice_bce"}), data, config, device)
    bar = TrainingProgress(
        enabled=progress,
        total=config.epochs * config.steps_per_epoch,
        done=state.epoch * config.steps_per_epoch + state.step,
        steps_per_epoch=config.steps_per_epoch,
    )
    try:
        loop.run(state, train_idx, val_idx, run_dir=run, meta=meta, bar=bar)
    finally:
        bar.close()
    _finish(run, val_idx)
    return state


def _load_or_fail(source: str | Path, config: AutoencoderConfig) -> MaskSet:
    data, failures = load_masks(source, config=config)
    for path, msg in failures:
        log.error("skipped %s: %s", path, msg)
    return data


def _preprocessing(config: AutoencoderConfig) -> dict[str, Any]:
    return {
        "masks": "axial whole tumour (label > 0), axis 2 of canonical RAS+ arrays",
        "grid": [config.size, config.size],
        "pixel_mm": config.grid_mm,
        "centre": "brain bounding box (field of view without images)",
        "resampling": "linear interpolation of the 0/1 mask, >= 0.5",
        "min_pixels": config.min_pixels,
    }


def _own_checkpoint(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    if payload.get("kind") != KIND:
        raise ValueError(
            f"{path}: a {payload.get('kind', 'segmentation')} checkpoint, not a mask "
            "autoencoder; pass a run made by 'gliomaseg autoencoder train'"
        )
    return payload


def split_patients(
    patients: NDArray[Any], fraction: float, *, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices of training and validation masks; a patient's masks stay on one side.

    ``round(fraction * n_patients)`` patients (at least one) are held out, chosen by a
    permutation seeded with ``seed``; none when there are fewer than five patients.
    """
    names = np.unique(np.asarray(patients))
    n_val = max(1, round(fraction * len(names))) if fraction > 0 and len(names) >= 5 else 0
    held = set(np.random.default_rng([seed, 1]).permutation(names)[:n_val].tolist())
    is_val = np.array([p in held for p in np.asarray(patients).tolist()], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class _Loop:
    """Epochs of a run: deterministic batches, validation, metrics and checkpoints."""

    def __init__(
        self,
        model: torch.nn.ModuleDict,
        optimizer: torch.optim.Optimizer,
        loss_fn: torch.nn.Module,
        data: MaskSet,
        config: AutoencoderConfig,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.data, self.config, self.device = data, config, device

    def run(
        self,
        state: RunState,
        train_idx: NDArray[np.int64],
        val_idx: NDArray[np.int64],
        *,
        run_dir: Path,
        meta: dict[str, Any],
        bar: Any,
    ) -> None:
        """Train from ``state`` to ``config.epochs``, writing into ``run_dir``."""
        from gliomaseg.train.datasets import EpochSampler
        from gliomaseg.train.runs import append_metrics

        cfg = self.config
        if not len(train_idx):
            raise ValueError("no training masks left after the validation split")
        sampler = EpochSampler(
            [True] * len(train_idx), length=cfg.steps_per_epoch * cfg.batch_size, seed=cfg.seed
        )
        while state.epoch < cfg.epochs:
            sampler.set_epoch(state.epoch, skip=state.step * cfg.batch_size)
            keys, losses, start = list(sampler), [], time.perf_counter()
            for first in range(0, len(keys), cfg.batch_size):
                losses.append(self.step(train_idx, keys[first : first + cfg.batch_size]))
                state.step += 1
                state.global_step += 1
                bar.advance(losses[-1])
                every = cfg.save_every_steps
                if every and state.step % every == 0 and state.step < cfg.steps_per_epoch:
                    self.save(run_dir / "checkpoints" / "last.pt", state, meta)
            metrics = self.validate(val_idx)
            state.epoch, state.step = state.epoch + 1, 0
            if metrics and metrics["dice_mean"] > state.best_metric:
                state.best_metric, state.best_epoch = metrics["dice_mean"], state.epoch
            row = {
                "epoch": state.epoch,
                "global_step": state.global_step,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "lr": cfg.lr,
                "seconds": round(time.perf_counter() - start, 2),
                **metrics,
            }
            bar.epoch_done(state.epoch, row)
            append_metrics(run_dir / "metrics.csv", row)
            self.save(run_dir / "checkpoints" / "last.pt", state, meta)
            if state.best_epoch == state.epoch:
                self.save(run_dir / "checkpoints" / "best.pt", state, meta)

    def step(self, train_idx: NDArray[np.int64], keys: list[tuple[int, int]]) -> float:
        batch = self.data.masks[train_idx[[k[0] for k in keys]]]
        if self.config.flip:
            flips = [np.random.default_rng(seed).random() < 0.5 for _, seed in keys]
            batch = np.where(np.asarray(flips)[:, None, None], batch[:, ::-1, :], batch)
        self.model.train()
        x = _tensor(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model["decoder"](self.model["encoder"](x)), x)
        if not bool(loss.isfinite()):
            raise FloatingPointError(f"loss became {loss.item()}; lower the learning rate")
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def validate(self, val_idx: NDArray[np.int64]) -> dict[str, float]:
        if not len(val_idx):
            return {}
        ref = self.data.masks[val_idx]
        return {"dice_mean": float(dice_per_mask(reconstruct(self.model, ref), ref).mean())}

    def save(self, path: Path, state: RunState, meta: dict[str, Any]) -> None:
        import torch

        from gliomaseg.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

        save_checkpoint(
            path,
            {
                "format": CHECKPOINT_FORMAT,
                **meta,
                "state_dict": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": asdict(state),
                "torch_rng": torch.get_rng_state(),
            },
        )


def _finish(run: Path, val_idx: NDArray[np.int64]) -> None:
    import shutil

    from gliomaseg.io.atomic import atomic_path
    from gliomaseg.train.runs import plot_curves

    if not len(val_idx):  # without validation the last weights are the best we have
        with atomic_path(run / "checkpoints" / "best.pt") as tmp:
            shutil.copyfile(run / "checkpoints" / "last.pt", tmp)
    plot_curves(run)


def load_autoencoder(
    path: str | Path, *, device: str = "cpu"
) -> tuple[torch.nn.ModuleDict, AutoencoderConfig]:
    """Rebuild a trained autoencoder from a run folder (``best.pt``) or a checkpoint file.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: a corrupt file, or a checkpoint that is not a mask autoencoder.
    """
    from gliomaseg.models.checkpoint import load_checkpoint

    file = Path(path)
    if file.is_dir():
        file = file / "checkpoints" / "best.pt"
        if not file.exists():
            file = file.with_name("last.pt")
    payload = _own_checkpoint(load_checkpoint(file), file)
    config = AutoencoderConfig.from_dict(payload["model_config"])
    model = build_autoencoder(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(
            f"{file}: weights do not fit the stored config ({str(err)[:200]})"
        ) from None
    return model.to(device).eval(), config


# --------------------------------------------------------------------------- latent space


def pca(latents: NDArray[Any], k: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scores (N, k) on the first k principal components and their explained variance ratios.

    Component signs are arbitrary (those of the SVD).
    """
    x = np.asarray(latents, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    return x @ vt[:k].T, ratio[:k]


def latent_correlations(
    scores: NDArray[Any], area_mm2: NDArray[Any], irregularity: NDArray[Any]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Spearman rho (and p) of each principal component with tumour area and irregularity.

    Returns:
        ``{"PC1": {"area_mm2": {"rho", "p"}, "irregularity": {"rho", "p"}}, ...}``; ``None``
        where a column is constant (no ranking).
    """
    from scipy.stats import spearmanr

    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for k in range(scores.shape[1]):
        out[f"PC{k + 1}"] = {}
        for name, values in (("area_mm2", area_mm2), ("irregularity", irregularity)):
            if np.ptp(values) == 0 or np.ptp(scores[:, k]) == 0:
                out[f"PC{k + 1}"][name] = {"rho": None, "p": None}
                continue
            rho, p = spearmanr(scores[:, k], values)
            out[f"PC{k + 1}"][name] = {"rho": float(rho), "p": float(p)}
    return out


def embed(
    run: str | Path, masks: MaskSet | str | Path, out_dir: str | Path, *, device: str = "cpu"
) -> dict[str, Any]:
    """Embed masks with a trained run and write the latent-space files into ``out_dir``.

    Files: ``slice_embeddings.{csv,npy}`` (one row per mask: case id, slice index, area mm²,
    irregularity, then ``z0..z{L-1}``; the NPY is the (N, L) float32 matrix in the same row
    order), ``case_embeddings.{csv,npy}`` (mean over each case's slices), ``pca.png`` (PC1
    vs PC2 coloured by area) and ``embed_report.json`` (returned).

    Raises:
        FileNotFoundError / ValueError: no run, no masks.
    """
    model, config = load_autoencoder(run, device=device)
    failures: list[tuple[str, str]] = []
    if isinstance(masks, MaskSet):
        data = masks
    else:
        data, failures = load_masks(masks, config=config)
    latents = encode(model, data.masks)
    dice = dice_per_mask(reconstruct(model, data.masks), data.masks)
    k = max(1, min(3, latents.shape[1], len(data) - 1))
    scores, ratio = pca(latents, k)
    out = Path(out_dir)
    files = _write_embeddings(out, data, latents)
    files["pca_png"] = _plot_pca(out / "pca.png", scores, data.area_mm2)
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": str(run),
        "masks": "in-memory masks" if isinstance(masks, MaskSet) else str(masks),
        "n_slices": len(data),
        "n_cases": len(np.unique(data.case_ids)),
        "size": config.size,
        "pixel_mm": config.grid_mm,
        "latent": config.latent,
        "reconstruction_dice_mean": float(dice.mean()) if len(dice) else None,
        "explained_variance_ratio": [float(r) for r in ratio],
        "spearman": latent_correlations(scores, data.area_mm2, data.irregularity),
        "skipped": [{"path": p, "reason": m} for p, m in failures],
        "files": {k: str(v) for k, v in files.items()},
    }
    write_json_atomic(out / "embed_report.json", report)
    return report


def _write_embeddings(out: Path, data: MaskSet, latents: NDArray[np.float32]) -> dict[str, Path]:
    zcols = [f"z{i}" for i in range(latents.shape[1])]
    rows = [
        [c, int(s), f"{a:.6g}", f"{r:.6g}", *(f"{v:.6g}" for v in z)]
        for c, s, a, r, z in zip(
            data.case_ids, data.slice_index, data.area_mm2, data.irregularity, latents, strict=True
        )
    ]
    files = {"slice_csv": out / "slice_embeddings.csv", "slice_npy": out / "slice_embeddings.npy"}
    write_text_atomic(
        files["slice_csv"],
        _csv(["case_id", "slice_index", "area_mm2", "irregularity", *zcols], rows),
    )
    write_with(files["slice_npy"], lambda tmp: np.save(tmp, latents.astype(np.float32)))
    ids = list(dict.fromkeys(data.case_ids.tolist()))
    pooled = np.stack([latents[data.case_ids == c].mean(axis=0) for c in ids]) if ids else latents
    counts = [int((data.case_ids == c).sum()) for c in ids]
    files["case_csv"], files["case_npy"] = out / "case_embeddings.csv", out / "case_embeddings.npy"
    write_text_atomic(
        files["case_csv"],
        _csv(
            ["case_id", "n_slices", *zcols],
            [[c, n, *(f"{v:.6g}" for v in z)] for c, n, z in zip(ids, counts, pooled, strict=True)],
        ),
    )
    write_with(files["case_npy"], lambda tmp: np.save(tmp, pooled.astype(np.float32)))
    return files


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _plot_pca(path: Path, scores: NDArray[np.float64], area: NDArray[np.float64]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = scores[:, 1] if scores.shape[1] > 1 else np.zeros(len(scores))
    points = ax.scatter(scores[:, 0], y, c=area, cmap="viridis", s=12)
    fig.colorbar(points, ax=ax, label="tumour area in the slice (mm²)")
    ax.set(xlabel="PC1", ylabel="PC2" if scores.shape[1] > 1 else "", title="mask latent space")
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


# --------------------------------------------------------------------------- command line


def add_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``autoencoder`` (with ``train`` and ``embed``) to a subparsers object.

    Returns the ``autoencoder`` parser; its ``func`` default is :func:`run`.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "autoencoder", help="learn a latent space of 2D tumour masks (train, embed)"
    )
    sub = parser.add_subparsers(dest="autoencoder_command", metavar="COMMAND", required=True)
    p = sub.add_parser("train", help="train (or --resume) a mask autoencoder")
    p.add_argument("--masks", type=Path, metavar="DIR|CACHE", help="prepared cache or cases")
    p.add_argument("-o", "--output", type=Path, metavar="RUN", help="run folder")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue a run exactly")
    p.add_argument("--latent", type=int, default=64, help="latent size (64 default; 128)")
    p.add_argument("--size", type=int, default=64, help="mask grid side: 64 (default) or 128")
    d = AutoencoderConfig()
    p.add_argument(
        "--epochs", type=int, help=f"epochs (on --resume: the new total; default: {d.epochs})"
    )
    p.add_argument(
        "--steps-per-epoch", type=int, help=f"steps per epoch (default: {d.steps_per_epoch})"
    )
    p.add_argument("--batch-size", type=int, help=f"masks per step (default: {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default: {d.lr:g})")
    p.add_argument("--seed", type=int, help=f"seeds split, batches, weights (default: {d.seed})")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help=f"auto: CUDA when present (default: {d.device})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = sub.add_parser("embed", help="latent vectors, PCA plot and correlations of masks")
    p.add_argument("--run", type=Path, required=True, metavar="RUN", help="trained run folder")
    p.add_argument(
        "--masks", type=Path, required=True, metavar="DIR|CACHE", help="prepared cache or cases"
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="output folder"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to encode")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``gliomaseg autoencoder train|embed`` from parsed flags; 0 ok, 2 bad input."""
    try:
        if args.autoencoder_command == "train":
            return _run_train(args)
        report = embed(args.run, args.masks, args.output, device=args.device)
    except (ValueError, FileNotFoundError) as err:
        print(f"gliomaseg: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    pc1 = report["spearman"].get("PC1", {})
    print(
        f"{report['n_slices']} slice(s) of {report['n_cases']} case(s) -> {args.output}; "
        f"reconstruction Dice {report['reconstruction_dice_mean']:.3f}; PC1 vs area rho "
        f"{_fmt(pc1.get('area_mm2', {}).get('rho'))}, vs irregularity rho "
        f"{_fmt(pc1.get('irregularity', {}).get('rho'))}"
    )
    return _report_skipped(report["skipped"])


def _run_train(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    if args.resume:
        if args.masks is not None:
            raise ValueError("--resume continues a run on its own masks; drop --masks")
        state = train_autoencoder(
            None, None, args.resume, resume=True, epochs=args.epochs, progress=progress
        )
        skipped: list[dict[str, str]] = []
    else:
        if args.masks is None or args.output is None:
            raise ValueError("autoencoder train needs --masks DIR|CACHE and -o RUN (or --resume)")
        overrides = {
            "epochs": args.epochs,
            "steps_per_epoch": args.steps_per_epoch,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "device": args.device,
        }
        config = AutoencoderConfig(
            size=args.size,
            latent=args.latent,
            **{k: v for k, v in overrides.items() if v is not None},
        )
        data, failures = load_masks(args.masks, config=config)
        skipped = [{"path": p, "reason": m} for p, m in failures]
        state = train_autoencoder(
            config, data, args.output, source=str(args.masks), progress=progress
        )
    best = "-" if state.best_epoch < 0 else f"{state.best_metric:.4f} at epoch {state.best_epoch}"
    print(
        f"done: {state.epoch} epoch(s), best validation Dice {best}; "
        f"run folder {args.resume or args.output}"
    )
    return _report_skipped(skipped)


def _report_skipped(skipped: list[dict[str, str]]) -> int:
    for item in skipped:
        print(f"gliomaseg: error: {item['path']}: {item['reason']}", file=sys.stderr)
    if skipped:
        print(f"gliomaseg: {len(skipped)} input(s) skipped", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


__all__ = [
    "FIELD_OF_VIEW_MM",
    "AutoencoderConfig",
    "MaskSet",
    "add_arguments",
    "build_autoencoder",
    "dice_per_mask",
    "embed",
    "encode",
    "fit_mask",
    "latent_correlations",
    "load_autoencoder",
    "load_masks",
    "pca",
    "reconstruct",
    "run",
    "split_patients",
    "train_autoencoder",
]
