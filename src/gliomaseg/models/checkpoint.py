"""Checkpoints: atomic writes, ``weights_only=True`` loads, clear errors for broken files.

A checkpoint is a plain dict of tensors and JSON-like values (format version, model config,
target, modalities, preprocessing, weights, optimizer/scheduler state, run position), so it
loads with ``torch.load(..., weights_only=True)`` and the network is rebuilt from the stored
constructor arguments.

A checkpoint is input like any other: a forged one (``ensemble: 1e8``, a config of a
hundred-gigabyte network) must fail before anything is built. So the file's size and its
zip entries are checked before ``torch.load``, every known key's type and range after it,
and :func:`load_model` compares the weights' names and shapes with those of the network the
config describes, built on PyTorch's ``meta`` device (shapes only, no memory), before
building the real one. The weights then bound what is allocated: they are already in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomaseg.core.errors import InputError, one_line
from gliomaseg.core.targets import TargetSpec
from gliomaseg.io.atomic import atomic_path
from gliomaseg.models.config import ModelConfig
from gliomaseg.models.ensemble import MeanEnsemble
from gliomaseg.models.factory import build_model
from gliomaseg.models.torch_file import MAX_TORCH_FILE_BYTES, TorchFileError, load_torch_file

CHECKPOINT_FORMAT = 1

#: Largest checkpoint file (and total of its zip entries) accepted: 2 GiB, over 100 times
#: the bundled models.
MAX_CHECKPOINT_BYTES = MAX_TORCH_FILE_BYTES

#: Most members a fold ensemble may have (one per cross-validation fold).
MAX_ENSEMBLE = 32

_FIX = "pass a checkpoint written by gliomaseg train (or a bundled model name)"

#: Every key a gliomaseg checkpoint may hold, with the types its value may have.
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "format": (int,),
    "kind": (str,),
    "ensemble": (int, type(None)),
    "inference_members": (int,),  # bundles: segment averages only the first this many
    "state_dict": (Mapping,),
    "model_config": (Mapping,),
    "target": (Mapping,),
    "modalities": (list, tuple),
    "context": (int,),
    "input_scale": (float, int),
    "data": (str,),
    "train_config": (Mapping,),
    "preprocessing": (Mapping,),
    "folds": (list,),
    "postprocess": (Mapping,),
    "review": (Mapping,),  # bundles: {"threshold": the model's validated review-flag threshold}
    "training_cases": (list, type(None)),  # bundles: case ids any member trained on
    "training_patients": (list, type(None)),
    "optimizer": (Mapping,),
    "scheduler": (Mapping, type(None)),
    "state": (Mapping,),
    "torch_rng": (torch.Tensor,),
}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file, then rename it into place.

    Saved through a file object, so the archive's inner folder is torch's fixed ``archive``
    rather than the temporary file's random name: the same payload gives the same bytes.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def _bad(path: Path, what: str, fix: str = _FIX) -> InputError:
    return InputError(f"{path}: {one_line(what)}; {fix}")


def _finite(tensor: torch.Tensor) -> bool:
    # numpy's isfinite is ~100x faster than torch's on CPU float16 (the bundled weights)
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return bool(np.isfinite(tensor.detach().cpu().numpy()).all())


def _check_state_dict(path: Path, state: Mapping[Any, Any]) -> None:
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _bad(path, f"state_dict entry {key!r} is not a named tensor")
        if value.is_floating_point() and not _finite(value):
            raise _bad(
                path,
                f"weight {key} holds NaN/Inf values (training diverged or the file is corrupt)",
                "use an earlier checkpoint or retrain",
            )


def check_payload(path: str | Path, payload: object) -> dict[str, Any]:
    """Check a loaded checkpoint's format version and the types and ranges of its keys.

    Args:
        path: The file (for messages).
        payload: What ``torch.load`` returned.

    Returns:
        ``payload`` as a dict.

    Raises:
        InputError: not a dict with ``state_dict``, another format version, an unknown key,
            a value of the wrong type or out of range, or non-finite weights.
    """
    path = Path(path)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise _bad(path, "not a gliomaseg checkpoint (no 'state_dict')")
    version = payload.get("format")
    if version != CHECKPOINT_FORMAT or isinstance(version, bool):
        raise _bad(
            path,
            f"checkpoint format {version!r} is not {CHECKPOINT_FORMAT}",
            "retrain or use a matching gliomaseg version",
        )
    unknown = sorted(str(k) for k in payload if k not in _KEY_TYPES)
    if unknown:
        raise _bad(path, f"unknown checkpoint key(s) {unknown}")
    for key, value in payload.items():
        types = _KEY_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise _bad(path, f"checkpoint key '{key}' is a {type(value).__name__}, not {names}")
    ensemble = payload.get("ensemble")
    if ensemble is not None and not 1 <= ensemble <= MAX_ENSEMBLE:
        raise _bad(path, f"ensemble size {ensemble} is not between 1 and {MAX_ENSEMBLE}")
    used = payload.get("inference_members")
    if used is not None and not 1 <= used <= (ensemble or 0):
        raise _bad(path, f"inference_members {used} is not between 1 and the ensemble size")
    context = payload.get("context", 0)
    if not 0 <= context <= 8:
        raise _bad(path, f"context {context} is not between 0 and 8 neighbouring slices")
    scale = payload.get("input_scale", 1.0)
    if not 0.0 < scale <= 1.0:
        raise _bad(path, f"input_scale {scale} is not an in-plane factor in (0, 1]")
    threshold = payload.get("review", {}).get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0.0 <= threshold <= 1.0
    ):
        raise _bad(path, f"review threshold {threshold!r:.40} is not a number between 0 and 1")
    modalities = payload.get("modalities", [])
    if not all(isinstance(m, str) for m in modalities) or len(modalities) > 16:
        raise _bad(path, f"modalities {modalities!r:.80} are not up to 16 names")
    _check_state_dict(path, payload["state_dict"])
    return payload


def input_scale(payload: Mapping[str, Any]) -> float:
    """The in-plane factor a 2D model was trained at; 1.0 for checkpoints without the key."""
    return float(payload.get("input_scale", 1.0))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a gliomaseg checkpoint safely (``weights_only=True``, CPU tensors).

    Raises:
        FileNotFoundError: no such file.
        InputError: a truncated, corrupt, oversized or foreign file, an unknown format
            version, or keys of the wrong type or range (see :func:`check_payload`); the
            message names the file and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint; check the run folder")
    try:
        payload = load_torch_file(
            path,
            what="checkpoint",
            max_bytes=MAX_CHECKPOINT_BYTES,
            limit_name="gliomaseg.models.checkpoint.MAX_CHECKPOINT_BYTES",
        )
    except TorchFileError as err:
        fix = "it is corrupt or partial: use checkpoints/best.pt or retrain" if err.loaded else _FIX
        raise _bad(path, err.reason, fix) from None
    return check_payload(path, payload)


def _check_weights(path: Path, payload: dict[str, Any], config: Any) -> None:
    """Weight names and shapes against the network ``config`` describes (built on ``meta``)."""

    with torch.device("meta"):
        expected = build_model(config, load_weights=False).state_dict()
    n = payload.get("ensemble") or 1
    prefixes = [f"members.{i}." for i in range(n)] if payload.get("ensemble") else [""]
    shapes = {p + k: tuple(v.shape) for p in prefixes for k, v in expected.items()}
    state = payload["state_dict"]
    missing = sorted(set(shapes) - set(state))
    extra = sorted(set(state) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(state) if tuple(state[k].shape) != shapes[k])
    if missing or extra or wrong:
        first = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {extra[0]}"
            if extra
            else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the config needs {shapes[wrong[0]]}"
        )
        raise _bad(
            path,
            f"weights do not fit the stored model config and ensemble size {n} "
            f"({len(missing)} missing, {len(extra)} unexpected, {len(wrong)} of the wrong "
            f"shape; first: {first})",
            "the file is corrupt or was edited: retrain or re-bundle it",
        )


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint and load its weights.

    Everything is checked before the network is built: the payload (:func:`check_payload`),
    the model config (:class:`~gliomaseg.models.ModelConfig`) and the weights' names and
    shapes against that config and the ensemble size.

    A bundle with ``inference_members`` gives an ensemble of its first that many members
    (``bench/accuracy.py`` reads every member itself, for the cross-validation).

    Returns:
        (model in eval mode on ``device``, the checkpoint's metadata without weights/optimizer).

    Raises:
        FileNotFoundError: no such file.
        InputError: naming the file: see :func:`load_checkpoint`; no or an invalid model
            config, target or modalities; weights that do not fit the config.
    """

    path = Path(path)
    payload = load_checkpoint(path)
    missing = [k for k in ("model_config", "target", "modalities") if k not in payload]
    if missing:
        raise _bad(path, f"segmentation checkpoint without {missing}")
    try:
        # The checkpoint holds every weight: never look for the encoder file it was started from.
        config = ModelConfig.from_dict(payload["model_config"])
        TargetSpec.from_dict(dict(payload["target"]))
    except (ValueError, KeyError, TypeError) as err:
        raise _bad(path, f"invalid model config or target ({one_line(err)})") from None
    channels = len(payload["modalities"]) * (2 * int(payload.get("context", 0)) + 1)
    if channels != config.in_channels:
        raise _bad(
            path,
            f"{len(payload['modalities'])} modalities with context {payload.get('context', 0)} "
            f"make {channels} input channels, the model config has {config.in_channels}",
        )
    _check_weights(path, payload, config)
    model = build_model(config, load_weights=False)
    state = payload["state_dict"]
    if payload.get("ensemble"):
        n = int(payload.get("inference_members") or payload["ensemble"])
        members = [model] + [build_model(config, load_weights=False) for _ in range(n - 1)]
        model = MeanEnsemble(members)
        if n < int(payload["ensemble"]):  # the members segment averages (a speed budget)
            kept = tuple(f"members.{i}." for i in range(n))
            state = {k: v for k, v in state.items() if k.startswith(kept)}
    model.load_state_dict(state)
    model.to(device).eval()
    meta = {
        k: v
        for k, v in payload.items()
        if k not in ("state_dict", "optimizer", "scheduler", "torch_rng")
    }
    return model, meta
