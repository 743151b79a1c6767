"""Whole-volume prediction: 2D (or 2.5D) networks batched over slices, 3D networks by sliding
windows; memory is bounded by the batch or the window, not the volume."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gliomaseg.core.targets import TargetSpec
from gliomaseg.models.config import pad_amounts
from gliomaseg.models.resize import check_scale, resize_images, resize_probabilities, scaled_size


def slice_with_context(
    image: np.ndarray, z: int, context: int, channels: Sequence[int] | None = None
) -> np.ndarray:
    """(C * (2k + 1), x, y) stack of slice ``z`` and ``k`` neighbours each side (2.5D input).

    Args:
        image: (Z, C, x, y) volume.
        z: Slice index.
        context: Neighbours each side; those beyond the volume repeat the edge slice.
        channels: Channel indices to keep, in order (None: all).
    """
    zs = np.clip(np.arange(z - context, z + context + 1), 0, image.shape[0] - 1)
    parts = [np.asarray(image[k], dtype=np.float32) for k in zs]
    if channels is not None:
        parts = [p[list(channels)] for p in parts]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def probabilities(logits: torch.Tensor, target: TargetSpec) -> torch.Tensor:
    """Softmax over channels or element-wise sigmoid, as the target asks."""
    return torch.softmax(logits, dim=1) if target.kind == "softmax" else torch.sigmoid(logits)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA (and on CPU when asked), else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def predict_volume(
    model: torch.nn.Module,
    volume: np.ndarray,
    *,
    target: TargetSpec,
    multiple: int,
    batch_size: int = 16,
    context: int = 0,
    channels: list[int] | None = None,
    device: torch.device | str = "cpu",
    amp: bool = False,
    tta: bool = False,
    channels_last: bool = False,
    input_scale: float = 1.0,
    progress: Callable[[int], None] | None = None,
    observe: Callable[[int, torch.Tensor, list[torch.Tensor]], None] | None = None,
) -> np.ndarray:
    # Long for its docstring: each argument is part of the contract segment and bench rely on.
    """Probabilities for every axial slice of a volume.

    Each batch of slices (N, C', x, y) is resized in-plane by ``input_scale`` (antialiased
    bilinear, as in training; see :mod:`gliomaseg.models.resize`), padded to ``multiple``, predicted,
    unpadded, and its probabilities resized back to (x, y) by bilinear interpolation. At
    ``input_scale=1`` nothing is resized.

    Args:
        model: 2D network returning logits (N, K, H, W); put in eval mode here.
        volume: (Z, C, x, y) float image, slice-major (a prepared-cache memory map works).
        target: Output definition (softmax or sigmoid).
        multiple: Spatial size divisor the network needs; slices are padded to it.
        batch_size: Slices per forward pass (bounds memory).
        context: Neighbouring slices each side stacked as channels (2.5D models).
        channels: Channel indices of ``volume`` to feed, in order (None: all).
        device: Where to run.
        amp: bf16 autocast. A model with bf16 weights (:func:`inference_copy`) is fed bf16 inputs.
        tta: Average over the four in-plane flip combinations.
        channels_last: Feed inputs in channels-last layout (pair with a model converted by
            ``model.to(memory_format=torch.channels_last)``; about 1.4x faster on CPU).
        input_scale: In-plane factor in (0, 1] the model was trained at (checkpoint key
            ``input_scale``).
        progress: Called with the number of slices done after each batch.
        observe: Called after each batch with its first slice index, the averaged
            probabilities (N, K, h', w') and every variant's own logits (one per flip, and
            per member of an ensemble with ``members``, such as
            :class:`gliomaseg.models.ensemble.MeanEnsemble`), on the network's unpadded grid
            (h', w') = the slice size times ``input_scale``; see
            :class:`gliomaseg.segment.uncertainty.Disagreement`. The returned probabilities are the
            same with or without it.

    Returns:
        (K, Z, x, y) float32 probabilities on the input grid.
    """
    device = torch.device(device)
    model.eval()
    z_total, _, h, w = volume.shape
    sh, sw = scaled_size((h, w), check_scale(input_scale))
    (top, bottom), (left, right) = pad_amounts((sh, sw), multiple)
    out = np.empty((target.channels, z_total, h, w), dtype=np.float32)
    flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,), (-2, -1)] if tta else [])
    crop_h, crop_w = slice(top, top + sh), slice(left, left + sw)
    dtype = next(model.parameters()).dtype  # bf16 for an :func:`inference_copy`
    for start in range(0, z_total, batch_size):
        zs = range(start, min(start + batch_size, z_total))
        batch = np.stack([slice_with_context(volume, z, context, channels) for z in zs])
        x = resize_images(torch.from_numpy(batch), (sh, sw))  # on the CPU, as in training
        x = F.pad(x, (left, right, top, bottom)).to(device, dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        probs_t, variants = _flip_average(
            model, x, flips, target, amp=amp, split=observe is not None, crop=(crop_h, crop_w)
        )
        if observe is not None:
            observe(start, probs_t, variants)
        probs = resize_probabilities(probs_t, (h, w)).cpu().numpy()
        out[:, start : start + len(zs)] = np.moveaxis(probs, 1, 0)
        if progress is not None:
            progress(len(zs))
    return out


def _flip_average(
    model: torch.nn.Module,
    x: torch.Tensor,
    flips: list[tuple[int, ...]],
    target: TargetSpec,
    *,
    amp: bool,
    split: bool,
    crop: tuple[slice, slice],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Probabilities of a padded batch averaged over ``flips``, cropped to ``crop``; with
    ``split``, every variant's own logits too (one per flip and ensemble member)."""
    acc = None
    variants: list[torch.Tensor] = []
    for dims in flips:
        xi = torch.flip(x, dims) if dims else x
        with autocast(x.device, amp):
            logits, own = _forward(model, xi, split=split)
            p = probabilities(logits.float(), target)
        p = torch.flip(p, dims) if dims else p
        acc = p if acc is None else acc + p
        for lo in own:  # logits: the observer thresholds them without a sigmoid
            variants.append((torch.flip(lo, dims) if dims else lo)[..., crop[0], crop[1]])
    assert acc is not None  # flips always holds the identity
    return (acc / len(flips))[:, :, crop[0], crop[1]], variants


def _forward(
    model: torch.nn.Module, x: torch.Tensor, *, split: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits of ``model`` and, with ``split``, each ensemble member's own logits.

    A model with a ``members`` list (:class:`gliomaseg.models.ensemble.MeanEnsemble`) is run member by
    member and averaged in the same order as its ``forward``, so the mean is unchanged; any
    other model is its own single variant.
    """
    members = getattr(model, "members", None) if split else None
    if not members:
        out = model(x)
        return out, [out] if split else []
    own = [member(x) for member in members]
    total = own[0]
    for lo in own[1:]:
        total = total + lo
    return total / len(own), own


@torch.no_grad()
def predict_volume_3d(
    model: torch.nn.Module,
    volume: np.ndarray,
    *,
    target: TargetSpec,
    roi_size: tuple[int, ...],
    channels: list[int] | None = None,
    device: torch.device | str = "cpu",
    amp: bool = False,
    overlap: float = 0.25,
    sw_batch_size: int = 2,
) -> np.ndarray:
    """Probabilities of a whole volume with a 3D network, by Gaussian-weighted sliding windows.

    Args:
        model: 3D network returning logits (N, K, D, H, W).
        volume: (Z, C, x, y) float image, slice-major (as prepared caches store it).
        target: Output definition.
        roi_size: Window size (Z, x, y), the training patch size.
        channels: Channel indices of ``volume`` to feed (None: all).
        device: Where to run; memory is bounded by the window, not the volume.
        amp: bf16 autocast.
        overlap: Window overlap fraction (MONAI's ``sliding_window_inference``).
        sw_batch_size: Windows per forward pass.

    Returns:
        (K, Z, x, y) float32 probabilities.
    """
    from monai.inferers import sliding_window_inference

    device = torch.device(device)
    model.eval()
    arr = np.asarray(volume, dtype=np.float32)
    if channels is not None:
        arr = arr[:, channels]
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, 1, 0)))[None].to(device)
    with autocast(device, amp):
        logits = sliding_window_inference(
            x,
            roi_size=roi_size,
            sw_batch_size=sw_batch_size,
            predictor=model,
            overlap=overlap,
            mode="gaussian",
        )
    if not isinstance(logits, torch.Tensor):
        raise TypeError("sliding-window inference returned no tensor")
    return probabilities(logits.float(), target)[0].cpu().numpy()


def fuse_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold eval-mode batch norm into the preceding convolution of ``Convolution`` blocks.

    Blocks are MONAI's ``Convolution`` or :class:`gliomaseg.models.plain_unet.Convolution`
    (the same structure: a ``conv`` then an ``adn`` whose first layer is the norm).

    For inference only (uses the running statistics): each fused block computes the same
    function with one operation less. Blocks whose normalisation is not batch norm directly
    after the convolution are left alone.

    Returns:
        The same model, modified in place and in eval mode.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in model.modules():
        conv = getattr(module, "conv", None)
        adn = getattr(module, "adn", None)
        if not isinstance(conv, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Conv3d):
            continue
        if (
            adn is None
            or not len(adn)
            or not isinstance(adn[0], torch.nn.modules.batchnorm._BatchNorm)
        ):
            continue
        transpose = isinstance(conv, torch.nn.ConvTranspose2d)
        module.conv = fuse_conv_bn_eval(conv, adn[0], transpose=transpose)
        adn[0] = torch.nn.Identity()
    return model


def prelu_as_leaky_relu(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every single-slope ``PReLU`` by ``LeakyReLU`` with that slope, for inference.

    The same function bit for bit (``x`` where ``x >= 0``, else ``slope * x``, one float
    multiply either way), but torch's PReLU kernel is an element-wise loop that takes about a
    fifth of the bundled ``brats`` network's CPU time, while leaky ReLU is a vectorised one
    (measured: 25% less time per batch, identical logits).
    Per-channel PReLUs (more than one slope) are left alone.

    Returns:
        The same model, modified in place.
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.PReLU) and child.weight.numel() == 1:
                setattr(module, name, torch.nn.LeakyReLU(float(child.weight.item())))
    return model


#: Layers whose CPU autocast runs in float32: a network holding one stays under autocast
#: (:func:`inference_copy`), so its results do not change.
_FLOAT32_LAYERS = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)


def inference_copy(
    model: torch.nn.Module, *, bf16: bool, in_place: bool = False
) -> torch.nn.Module | None:
    """A faster copy of a 2D ``model`` that computes the same logits bit for bit, or None.

    Float32: PReLUs become leaky ReLUs (:func:`prelu_as_leaky_relu`). bf16: the weights are
    cast to bf16 once, then the same swap (the slopes rounded to bf16 as autocast rounds
    them); feed it bf16 inputs instead of running it under autocast. Under autocast every
    convolution casts its float32 weights again on every call (autocast caches casts only for
    weights that require grad): 15% of the bundled ``brats`` network's CPU time. Identical
    logits hold for networks of convolutions, element-wise activations, additions and
    concatenations (``tests/test_inference.py`` checks both precisions against the original
    network); one with a normalisation layer left (autocast runs those in float32) gets None
    under bf16: keep it under autocast. ``in_place`` converts ``model`` itself instead of a
    copy (a deep copy of the bundled 5-member ``brats`` takes 0.1-0.2 s of a cold start).
    """
    import copy

    if bf16 and any(isinstance(m, _FLOAT32_LAYERS) for m in model.modules()):
        return None
    net = model if in_place else copy.deepcopy(model)
    return prelu_as_leaky_relu(net.to(torch.bfloat16) if bf16 else net)


def instance_norm_as_group_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Replace instance norm by the same function as ``GroupNorm(C, C)``, for inference.

    Instance norm is group norm with one channel per group. On the CPU torch's instance norm
    is several times slower than its group norm, and on channels-last tensors it is the
    slowest layer of the network (the bundled ``brats`` ensemble: 2.9 s vs 0.57 s for 16
    slices of 144 x 176 on 2 threads). The outputs differ by rounding only (logits within
    about 1e-4). Layers that use running statistics in eval mode are left alone.

    Returns:
        The same model, modified in place (shares the affine parameters).
    """
    norms = (torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, norms) or child.track_running_stats:
                continue
            group = torch.nn.GroupNorm(
                child.num_features, child.num_features, eps=child.eps, affine=child.affine
            )
            if child.affine:
                group.weight, group.bias = child.weight, child.bias
            setattr(module, name, group)
    return model
