"""Settings of a mask-autoencoder run (saved as ``RUN/config.json``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from gliomaseg.core.config import from_dict

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
        return from_dict(cls, data, what="autoencoder option")


__all__ = [
    "FIELD_OF_VIEW_MM",
    "KIND",
    "AutoencoderConfig",
]
