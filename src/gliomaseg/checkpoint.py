"""Checkpoints: atomic writes, ``weights_only=True`` loads, clear errors for broken files.

A checkpoint is a plain dict of tensors and JSON-like values (format version, model config,
target, modalities, preprocessing, weights, optimizer/scheduler state, run position), so it
loads with ``torch.load(..., weights_only=True)`` and the network is rebuilt from the stored
constructor arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gliomaseg.errors import one_line
from gliomaseg.io.atomic import atomic_path

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file, then rename it into place."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a gliomaseg checkpoint safely (``weights_only=True``, CPU tensors).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated, corrupt or foreign file, or an unknown format version; the
            message names the file and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint; check the run folder")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {one_line(err)[:200]}); "
            "it is corrupt or partial: use checkpoints/best.pt or retrain"
        ) from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(
            f"{path}: not a gliomaseg checkpoint (no 'state_dict'); pass a file written by gliomaseg train"
        )
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path}: checkpoint format {payload.get('format')} is not {CHECKPOINT_FORMAT}; "
            "retrain or use a matching gliomaseg version"
        )
    return payload


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint and load its weights.

    Returns:
        (model in eval mode on ``device``, the checkpoint's metadata without weights/optimizer).
    """
    from gliomaseg.models import ModelConfig, build_model

    payload = load_checkpoint(path)
    # The checkpoint holds every weight: never look for the encoder file it was started from.
    config = ModelConfig.from_dict(payload["model_config"])
    model = build_model(config, load_weights=False)
    if payload.get("ensemble"):
        from gliomaseg.bundle import MeanEnsemble

        members = [model] + [
            build_model(config, load_weights=False) for _ in range(int(payload["ensemble"]) - 1)
        ]
        model = MeanEnsemble(members)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(
            f"{path}: weights do not fit the stored model config ({str(err)[:200]})"
        ) from None
    model.to(device).eval()
    meta = {
        k: v
        for k, v in payload.items()
        if k not in ("state_dict", "optimizer", "scheduler", "torch_rng")
    }
    return model, meta
