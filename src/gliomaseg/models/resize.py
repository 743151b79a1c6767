"""In-plane resizing of 2D slices for models trained at a reduced resolution (``input_scale``).

Training (:class:`gliomaseg.train.datasets.SliceDataset`) and inference
(:func:`gliomaseg.models.inference.predict_volume`) call the same functions, so a network sees the
same pixels in both:

* images go through antialiased bilinear interpolation (``torch`` ``antialias=True``): when
  downsampling, the bilinear kernel is widened to the output's pixel size (a triangle filter
  over 2/s input pixels), so every input pixel contributes and nothing aliases, for any
  factor, not only integer ones (``area`` mode averages uneven windows at non-integer
  factors); when upsampling it is plain bilinear, so one function serves both directions;
* label maps are resized by nearest neighbour at pixel centres (``nearest-exact``), so codes
  are never blended and multi-class maps (NCR/ED/ET) stay valid without a threshold;
* probabilities are brought back to the slice's own size by plain bilinear interpolation,
  then decoded there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def check_scale(scale: float) -> float:
    """``scale`` as a float if it is an in-plane factor in (0, 1], else a ValueError."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0.0 < scale <= 1.0:
        raise ValueError(f"input_scale {scale!r} must be a number in (0, 1] (1: full resolution)")
    return float(scale)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of a (h, w) slice resized by ``scale``, rounded half up, at least 1 pixel each."""
    return max(1, int(size[0] * scale + 0.5)), max(1, int(size[1] * scale + 0.5))


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of the last two axes.

    Args:
        x: (N, C, h, w) float tensor.
        size: Output (H, W).

    Returns:
        (N, C, H, W) float tensor; ``x`` itself when the size is unchanged.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def resize_probabilities(p: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, K, H, W) probabilities back to (N, K, h, w) (no antialiasing)."""
    if tuple(p.shape[-2:]) == tuple(size):
        return p
    return F.interpolate(p, size=size, mode="bilinear", align_corners=False)


def resize_slice(image: np.ndarray, scale: float) -> np.ndarray:
    """One (C, h, w) slice resized in-plane by ``scale``: (C, H, W) float32 (:func:`scaled_size`).

    ``scale == 1`` returns ``image`` unchanged.
    """
    if scale == 1.0:
        return image
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    size = scaled_size((image.shape[-2], image.shape[-1]), scale)
    return resize_images(x, size)[0].numpy()


def resize_labels(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (h, w) label map to (H, W), same dtype.

    Output pixel i takes input pixel ``floor((i + 0.5) * h / H)``: the one under its centre
    (torch's ``nearest-exact``, aligned with the image's ``align_corners=False`` grid).
    """
    h, w = label.shape[-2:]
    if (h, w) == tuple(size):
        return label
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return label[..., rows[:, None], cols[None, :]]
