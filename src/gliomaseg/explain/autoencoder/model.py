"""The mask autoencoder's network: build it, encode and reconstruct masks, load a trained one.

Network (:func:`build_autoencoder`): ``log2(size) - 2`` levels of two 3x3 convolutions (the
first with stride 2) down to 4 x 4, a linear layer to the latent vector, and the mirror image
with transposed convolutions back to one logit per pixel. It is a ``torch.nn.ModuleDict`` of
``encoder`` and ``decoder`` ``Sequential`` s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from gliomaseg.core.errors import InputError
from gliomaseg.evaluate.metrics import confusion, dice
from gliomaseg.explain.autoencoder.config import KIND, AutoencoderConfig
from gliomaseg.io.outputs import run_checkpoint
from gliomaseg.models.checkpoint import load_checkpoint


def build_autoencoder(config: AutoencoderConfig) -> torch.nn.ModuleDict:
    """The network of a config: ``{"encoder": (N,1,S,S) -> (N,L), "decoder": (N,L) -> logits}``.

    The decoder returns (N, 1, S, S) logits (sigmoid > 0.5, i.e. logit > 0, is tumour).
    """
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
    return torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None].to(device)


def _batched(
    model: torch.nn.ModuleDict,
    masks: NDArray[Any],
    batch_size: int,
    step: Callable[[torch.Tensor], NDArray[Any]],
) -> list[NDArray[Any]]:
    """``step`` applied to batches of ``masks`` on the model's device, in eval mode."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        return [
            step(_tensor(masks[start : start + batch_size], device))
            for start in range(0, len(masks), batch_size)
        ]


def encode(
    model: torch.nn.ModuleDict, masks: NDArray[Any], *, batch_size: int = 256
) -> NDArray[np.float32]:
    """Latent vectors (N, L) float32 of (N, S, S) masks on the model's grid."""
    out = _batched(model, masks, batch_size, lambda x: model["encoder"](x).float().cpu().numpy())
    if out:
        return np.concatenate(out)
    linear = next(m for m in model["decoder"].modules() if isinstance(m, nn.Linear))
    return np.zeros((0, linear.in_features), dtype=np.float32)


def reconstruct(
    model: torch.nn.ModuleDict, masks: NDArray[Any], *, batch_size: int = 256
) -> NDArray[np.uint8]:
    """Reconstructed (N, S, S) uint8 0/1 masks (decoder logit > 0)."""

    def step(x: torch.Tensor) -> NDArray[Any]:
        logits = model["decoder"](model["encoder"](x))
        return (logits[:, 0] > 0).cpu().numpy().astype(np.uint8)

    out = _batched(model, masks, batch_size, step)
    return np.concatenate(out) if out else np.zeros_like(np.asarray(masks), dtype=np.uint8)


def dice_per_mask(pred: NDArray[Any], ref: NDArray[Any]) -> NDArray[np.float64]:
    """Dice of each pair of (N, S, S) masks (BraTS policy: 1 when both are empty)."""
    return np.array(
        [dice(confusion(p, r), empty="brats") for p, r in zip(pred, ref, strict=True)],
        dtype=np.float64,
    )


def _own_checkpoint(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    if payload.get("kind") != KIND:
        raise InputError(
            f"{path}: a {payload.get('kind', 'segmentation')} checkpoint, not a mask "
            "autoencoder; pass a run made by 'gliomaseg autoencoder train'"
        )
    return payload


def load_autoencoder(
    path: str | Path, *, device: str = "cpu"
) -> tuple[torch.nn.ModuleDict, AutoencoderConfig]:
    """Rebuild a trained autoencoder from a run folder (``best.pt``) or a checkpoint file.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: a corrupt file, or a checkpoint that is not a mask autoencoder.
    """
    file = Path(path)
    if file.is_dir():
        file = run_checkpoint(file, "best")
        if not file.exists():
            file = run_checkpoint(path, "last")
    payload = _own_checkpoint(load_checkpoint(file), file)
    config = AutoencoderConfig.from_dict(payload["model_config"])
    model = build_autoencoder(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise InputError(
            f"{file}: weights do not fit the stored config ({str(err)[:200]})"
        ) from None
    return model.to(device).eval(), config


__all__ = [
    "build_autoencoder",
    "dice_per_mask",
    "encode",
    "load_autoencoder",
    "reconstruct",
]
