"""Data augmentation on numpy arrays, one sample at a time, with an explicit random generator.

Spatial transforms (flips, rotations, elastic deformation) move the image and the label
together: images are interpolated linearly, labels by nearest neighbour, so label codes are
never blended. Intensity transforms touch the image only. Every transform draws from the
``np.random.Generator`` it is given, so a sample's augmentation is reproducible from
(seed, epoch, index) whatever the number of data-loader workers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from gliomaseg.core.config import from_dict


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how strongly. All default to off.

    Attributes:
        flip: Probability of flipping each in-plane axis.
        rotate_deg: Maximum absolute in-plane rotation (degrees); 0 disables.
        rotate_p: Probability of rotating a sample.
        elastic: Probability of an elastic deformation.
        elastic_alpha: Displacement magnitude (pixels) of the elastic field.
        elastic_sigma: Smoothness (pixels) of the elastic field.
        noise_std: Standard deviation of additive Gaussian noise (z-score units); 0 disables.
        brightness: Maximum additive shift (z-score units); 0 disables.
        contrast: Maximum relative contrast change (0.2 -> x0.8..x1.2); 0 disables.
        gamma: Maximum log-gamma magnitude (0.3 -> gamma in e^-0.3..e^0.3); 0 disables.
        intensity_p: Probability of applying each intensity transform.
        missing: Probability that each modality other than ``missing_source`` is replaced by
            a copy of it (all its context slices), before the other transforms: how the
            Kaggle LGG TIFFs fill a missing sequence (FLAIR copied into its channel), so a
            model meets such cases in training; 0 disables.
        missing_source: The modality copied (a name of the config's modalities).
    """

    flip: float = 0.0
    rotate_deg: float = 0.0
    rotate_p: float = 0.5
    elastic: float = 0.0
    elastic_alpha: float = 30.0
    elastic_sigma: float = 6.0
    noise_std: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    intensity_p: float = 0.5
    missing: float = 0.0
    missing_source: str = "flair"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``config.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Build from a dict; unknown keys are an error naming them."""
        return from_dict(cls, data or {}, what="augmentation option")

    @property
    def spatial(self) -> bool:
        """True when any spatial transform is on."""
        return self.flip > 0 or self.rotate_deg > 0 or self.elastic > 0


def augment(
    image: np.ndarray, label: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one 2D sample.

    Args:
        image: (C, H, W) float32.
        label: (H, W) integer codes.
        config: What to apply.
        rng: Random generator for this sample.

    Returns:
        (image, label) with the same shapes and dtypes.
    """
    for axis in (-2, -1):
        if config.flip > 0 and rng.random() < config.flip:
            image = np.flip(image, axis=axis)
            label = np.flip(label, axis=axis)
    if config.rotate_deg > 0 and rng.random() < config.rotate_p:
        angle = float(rng.uniform(-config.rotate_deg, config.rotate_deg))
        image = ndimage.rotate(image, angle, axes=(-2, -1), reshape=False, order=1, mode="constant")
        label = ndimage.rotate(label, angle, axes=(-2, -1), reshape=False, order=0, mode="constant")
    if config.elastic > 0 and rng.random() < config.elastic:
        image, label = _elastic(image, label, config, rng)
    image = _intensity(np.ascontiguousarray(image, dtype=np.float32), config, rng)
    return image, np.ascontiguousarray(label)


def copy_modalities(
    image: np.ndarray, *, modalities: int, source: int, p: float, rng: np.random.Generator
) -> np.ndarray:
    """Replace each modality but ``source`` by a copy of ``source`` with probability ``p``.

    Args:
        image: (modalities * S, H, W), the S context slices one after the other, each with
            every modality in order (as :func:`gliomaseg.models.inference.slice_with_context`
            stacks them).
        modalities: Modalities per slice.
        source: Index of the modality copied.
        p: Probability per modality; 0 draws nothing from ``rng``.
        rng: Random generator for this sample.

    Returns:
        ``image`` itself when nothing was replaced, else a new array of the same shape.
    """
    if p <= 0:
        return image
    out = image
    for m in range(modalities):
        if m != source and rng.random() < p:
            if out is image:
                out = np.array(image)
            out[m::modalities] = image[source::modalities]
    return out


def _elastic(
    image: np.ndarray, label: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    h, w = label.shape
    dy, dx = (
        ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), config.elastic_sigma)
        * config.elastic_alpha
        for _ in range(2)
    )
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([yy + dy, xx + dx])
    warped = np.stack(
        [ndimage.map_coordinates(c, coords, order=1, mode="constant") for c in image]
    ).astype(np.float32)
    lab = ndimage.map_coordinates(label, coords, order=0, mode="constant").astype(label.dtype)
    return warped, lab


def _intensity(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    inside = image != 0  # z-scored data: background stays exactly 0
    if config.contrast > 0 and rng.random() < config.intensity_p:
        image = image * np.float32(rng.uniform(1 - config.contrast, 1 + config.contrast))
    if config.brightness > 0 and rng.random() < config.intensity_p:
        image = image + np.float32(rng.uniform(-config.brightness, config.brightness)) * inside
    if config.gamma > 0 and rng.random() < config.intensity_p:
        gamma = float(np.exp(rng.uniform(-config.gamma, config.gamma)))
        lo, hi = float(image.min()), float(image.max())
        if hi > lo:
            image = (((image - lo) / (hi - lo)) ** gamma * (hi - lo) + lo) * inside
    if config.noise_std > 0 and rng.random() < config.intensity_p:
        noise = rng.normal(0.0, config.noise_std, image.shape).astype(np.float32)
        image = image + noise * inside
    return image.astype(np.float32, copy=False)
