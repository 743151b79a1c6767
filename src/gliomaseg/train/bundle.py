"""Shipping trained models: fold ensembles in one checkpoint, with a model card beside it.

A bundled model is ``<name>.pt`` plus ``<name>.json`` (its model card). The checkpoint is an
ordinary gliomaseg checkpoint (:mod:`gliomaseg.models.checkpoint`) whose ``state_dict`` holds every
member of a :class:`MeanEnsemble` (keys ``members.<i>.``), with the learned weights stored as
float16 to halve the download and loaded back into float32. Normalisation statistics
(``running_mean``/``running_var``) and any tensor float16 cannot hold (beyond +-65504, where
it would become inf) stay float32: batch-norm variances of a few million are common. Member ``i`` is the model trained with fold ``i`` held
out, so the card's ``folds`` say which patients each member never saw: that is what
``bench/accuracy.py`` needs to rerun the cross-validation of the shipped weights.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import torch

from gliomaseg import __version__
from gliomaseg.core.errors import InputError
from gliomaseg.core.machine import git_commit, machine_info
from gliomaseg.io.atomic import write_json_atomic
from gliomaseg.io.cache import is_cache, load_index, network_axes
from gliomaseg.io.outputs import CHECKPOINT_DIR, LAST_CHECKPOINT, RUN_METRICS
from gliomaseg.models.checkpoint import (
    CHECKPOINT_FORMAT,
    input_scale,
    load_checkpoint,
    save_checkpoint,
)
from gliomaseg.train.builders import split_cases
from gliomaseg.train.config import TrainConfig


def bundle_runs(
    run_dirs: Sequence[str | Path],
    output: str | Path,
    *,
    description: str,
    command: str = "",
    checkpoint: str = LAST_CHECKPOINT,
    card: dict[str, Any] | None = None,
    hardware: dict[str, Any] | str | None = None,
    postprocess: dict[str, float] | None = None,
    cache: str | Path | None = None,
    inference_members: int | None = None,
    flag_threshold: float | None = None,
) -> dict[str, Any]:
    # Long for its docstring and two literal records (the checkpoint, the card), key by key.
    """Merge the cross-validation runs of one config into ``output`` (.pt) and its card (.json).

    Args:
        run_dirs: One run folder per fold, any order; each must hold ``checkpoints/<checkpoint>``
            and be trained from the same cache and config (only the fold may differ).
        output: Destination ``.pt``; the card goes beside it with the suffix ``.json``.
        description: One line for ``gliomaseg models``.
        command: The commands that reproduce the training (stored in the card).
        checkpoint: Which checkpoint of each run (``last.pt``: no selection on validation data).
        hardware: Where it was trained (default: this machine).
        postprocess: :class:`gliomaseg.segment.postprocess.PostprocessConfig` fields ``segment``
            applies by default with this model (tune them with ``bench/accuracy.py``).
        card: Further card fields (e.g. training data notes); metrics come from
            ``bench/accuracy.py --update-card``.
        cache: The runs' prepared cache (default: the path stored in the runs), read for each
            fold's validation patients.
        inference_members: ``segment`` averages only the first this many members, in fold
            order (a speed budget); every run is still stored, so ``bench/accuracy.py``
            reproduces the whole cross-validation. None: all of them.
        flag_threshold: The review-flag threshold ``segment`` uses with this model unless
            ``--flag-threshold`` is given (choose it with ``bench/flags.py`` on these runs);
            None: ``segment``'s default.

    Returns:
        The model card.

    Raises:
        ValueError: runs of different configs, models or data, or a repeated fold.
        InputError: the prepared cache is not found (without it the card cannot say which
            patients each member never saw).
    """
    runs, payloads = _load_runs(run_dirs, checkpoint)
    first = payloads[0]
    used = len(payloads) if inference_members is None else int(inference_members)
    if flag_threshold is not None and not 0.0 <= flag_threshold <= 1.0:
        raise ValueError(f"--flag-threshold {flag_threshold}: between 0 and 1")
    review = {} if flag_threshold is None else {"review": {"threshold": float(flag_threshold)}}
    if not 1 <= used <= len(payloads):
        raise ValueError(
            f"--inference-members {inference_members}: between 1 and the {len(payloads)} runs"
        )
    cache = Path(cache if cache is not None else first["data"])
    if not is_cache(cache):
        raise InputError(
            f"{cache}: the runs' prepared cache is not there (the card needs each fold's "
            "validation patients); pass --cache CACHE"
        )
    folds = _fold_records(load_index(cache), payloads)
    train_config = {k: v for k, v in first["train_config"].items() if k != "fold"}
    training = training_cases(runs, payloads, cache=cache)
    _check_aliases(training, (card or {}).get("training_case_aliases"), "the runs")
    shared = {  # what the checkpoint and the card both say
        "input_scale": input_scale(first),
        "preprocessing": {**first.get("preprocessing", {}), "axes": network_axes(first)},
        "target": first["target"],
        "folds": folds,
        **training,
    }
    output = Path(output)
    save_checkpoint(
        output,
        {
            "format": CHECKPOINT_FORMAT,
            "ensemble": len(payloads),
            **({"inference_members": used} if used < len(payloads) else {}),
            "state_dict": _ensemble_state(payloads),
            "model_config": first["model_config"],
            "modalities": first["modalities"],
            "context": first["context"],
            "train_config": train_config,
            "postprocess": dict(postprocess or {}),
            **review,
            **shared,
        },
    )
    model_card: dict[str, Any] = {
        "name": output.stem,
        "description": description,
        "architecture": first["model_config"],
        "ensemble": _ensemble_text(len(payloads), used),
        **({"inference_members": used} if used < len(payloads) else {}),
        "input_channels": list(first["modalities"]),
        "context_slices_each_side": first["context"],
        "input_channel_order": _channel_order(first["modalities"], int(first["context"])),
        "input_scale": shared["input_scale"],
        "preprocessing": shared["preprocessing"],
        "target": shared["target"],
        "training_config": train_config,
        "training_command": command,
        "postprocessing": dict(postprocess or {}),
        **review,
        **shared,  # folds and training cases (the keys above keep their places)
        "training_seconds": [_train_seconds(run) for run in runs],
        **_cpu_seconds(runs),
        "hardware": hardware or machine_info(),
        "date": date.today().isoformat(),
        "code_version": f"gliomaseg {__version__} (git {git_commit(short=True) or 'unknown'})",
        "weights_dtype": "float16, normalisation statistics float32 (loaded as float32)",
        **(card or {}),
    }
    _check_aliases(model_card, model_card.get("training_case_aliases"), "these runs")
    write_json_atomic(output.with_suffix(".json"), model_card)
    return model_card


def _ensemble_text(stored: int, used: int) -> str:
    """The card's ``ensemble`` line: what ``segment`` averages, and what is stored."""
    if used == stored:
        return f"mean of the logits of {stored} fold models (member i: fold i held out)"
    return (
        f"mean of the logits of the first {used} of {stored} fold models (member i: fold i "
        f"held out), a speed budget; all {stored} are stored for the cross-validation"
    )


def _load_runs(
    run_dirs: Sequence[str | Path], checkpoint: str
) -> tuple[list[Path], list[dict[str, Any]]]:
    """The runs and their checkpoints, ordered by fold; checks that they make one model.

    Raises:
        ValueError: runs of different configs, models or data, or a repeated fold.
    """
    loaded = [(Path(r), load_checkpoint(Path(r) / CHECKPOINT_DIR / checkpoint)) for r in run_dirs]
    loaded.sort(key=lambda item: int(item[1]["train_config"]["fold"]))  # member i = fold i
    first = loaded[0][1]
    for run, p in loaded:
        for key in ("model_config", "target", "modalities", "context"):
            if p.get(key) != first.get(key):
                raise ValueError(f"{run}: its {key} differs from the other runs; bundle one config")
        if network_axes(p) != network_axes(first):
            raise ValueError(
                f"{run}: trained on arrays in another orientation ({network_axes(p)}, not "
                f"{network_axes(first)}: a cache from another gliomaseg version); retrain it"
            )
        if input_scale(p) != input_scale(first):
            raise ValueError(
                f"{run}: its input_scale differs from the other runs; bundle one config"
            )
    folds_used = [int(p["train_config"]["fold"]) for _, p in loaded]
    if len(set(folds_used)) != len(folds_used):
        raise ValueError(f"runs repeat a fold ({folds_used}); pass one run per fold")
    return [run for run, _ in loaded], [payload for _, payload in loaded]


def _ensemble_state(payloads: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Every member's weights under ``members.<i>.``, compacted (:func:`_compact`)."""
    state: dict[str, torch.Tensor] = {}
    for i, p in enumerate(payloads):
        for k, v in p["state_dict"].items():
            state[f"members.{i}.{k}"] = _compact(k, v)
    return state


def _fold_records(
    index: dict[str, Any], payloads: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each member's fold and the validation patients it never saw."""
    folds = []
    for p in payloads:
        fold = int(p["train_config"]["fold"])
        val = index["folds"][fold]["val"] if index and 0 <= fold < len(index["folds"]) else []
        folds.append({"fold": fold, "val_patients": val})
    return folds


def _check_aliases(training: dict[str, Any], aliases: Any, whose: str) -> None:
    """Every alias must name a training case (``training["training_cases"]``)."""
    trained = set(training.get("training_cases") or [])
    for alias, case_id in (aliases or {}).items():
        if case_id not in trained:
            raise InputError(
                f"alias {alias}={case_id}: {case_id} is not a training case of {whose}"
            )


#: Largest magnitude stored as float16 (its maximum finite value is 65504).
_FLOAT16_MAX = 6.0e4


def _compact(name: str, value: torch.Tensor) -> torch.Tensor:
    """float16 for learned floating tensors that fit it; float32 for statistics and the rest."""
    if not value.is_floating_point():
        return value
    if name.endswith(("running_mean", "running_var")) or (
        value.numel() and float(value.abs().max()) > _FLOAT16_MAX
    ):
        return value.float()
    return value.half()


#: What ``segment`` says when a case is one the model was trained on.
TRAINING_CASE_NOTE = (
    "this case was used to train the model; its scores are not an independent measure"
)


def _run_cache(run: Path, data: str | None, *, name: str = "cache") -> Path | None:
    """The prepared cache a run trained from: ``data`` itself when it is one, else the
    cache ``train`` prepared inside the run folder (``run/<name>``); None when gone."""
    if data and is_cache(data):
        return Path(data)
    if is_cache(run / name):
        return run / name
    return None


def training_cases(
    runs: Sequence[Path], payloads: Sequence[dict[str, Any]], *, cache: Path | None = None
) -> dict[str, list[str] | None]:
    """Case ids and patients any member trained on, read from each run's prepared cache.

    Each member's training split is recomputed exactly as ``train`` made it (the cache's
    patient-level folds without the member's validation fold, or every labelled case for
    fold -1), plus every labelled case of its ``extra_data`` cache.

    Args:
        runs: Run folders, one per member.
        payloads: Their checkpoints (``data``, ``train_config``).
        cache: The runs' prepared cache when known (``bundle --cache``); default: each run's
            ``data`` when it is a cache, else the cache ``train`` prepared in the run folder.

    Returns:
        ``{"training_cases": [...], "training_patients": [...]}`` sorted; both None when a
        run's cache (or extra-data cache) is no longer where training left it.
    """
    cases: set[str] = set()
    patients: set[str] = set()
    for run, payload in zip(runs, payloads, strict=True):
        config = payload["train_config"]
        main = cache if cache is not None else _run_cache(run, payload.get("data"))
        sources = [(main, int(config.get("fold", 0)))]
        if config.get("extra_data"):  # joins training whole, never validation
            sources.append((_run_cache(run, config["extra_data"], name="extra_cache"), -1))
        for source, fold in sources:
            if source is None:
                return {"training_cases": None, "training_patients": None}
            ids, _ = split_cases(source, TrainConfig(fold=fold))  # the very split train used
            by_id = {
                c["case_id"]: c.get("patient") or c["case_id"] for c in load_index(source)["cases"]
            }
            cases.update(ids)
            patients.update(by_id[i] for i in ids)
    return {"training_cases": sorted(cases), "training_patients": sorted(patients)}


def model_training_cases(model_path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """A model's training cases: from its card beside it (``<model>.json``), else the checkpoint.

    Returns:
        ``training_cases``, ``training_patients`` (lists, or None when the model does not
        record them) and ``training_case_aliases`` (other names of trained cases, e.g. the
        same patient in another release's naming: alias -> trained id).
    """
    card: dict[str, Any] = {}
    path = Path(model_path).with_suffix(".json")
    if path.is_file():
        try:
            card = read_card(path)
        except (OSError, ValueError):
            card = {}
    source = card if card.get("training_cases") is not None else meta
    return {
        "training_cases": source.get("training_cases"),
        "training_patients": source.get("training_patients"),
        "training_case_aliases": dict(source.get("training_case_aliases") or {}),
    }


def training_case_record(
    training: dict[str, Any], case_id: str, patient: str = ""
) -> dict[str, Any]:
    """Whether a case (or its patient) is one the model was trained on: the summary field.

    Returns:
        ``{"used_to_train_model": True/False/None, "matched": id or None, "note": text or
        None}``; None (unknown) when the model records no training cases.
    """
    cases = training.get("training_cases")
    if cases is None:
        return {
            "used_to_train_model": None,
            "matched": None,
            "note": "the model records no training cases (bundled before they were recorded)",
        }
    aliases = training.get("training_case_aliases") or {}
    known = set(cases) | set(training.get("training_patients") or [])
    for name in dict.fromkeys(n for n in (case_id, patient) if n):
        if name in known:
            return {"used_to_train_model": True, "matched": name, "note": TRAINING_CASE_NOTE}
        if name in aliases:
            return {
                "used_to_train_model": True,
                "matched": f"{aliases[name]} (same patient as {name})",
                "note": TRAINING_CASE_NOTE,
            }
    return {"used_to_train_model": False, "matched": None, "note": None}


def _channel_order(modalities: Sequence[str], context: int) -> list[str]:
    offsets = range(-context, context + 1)
    return [f"{m}[z{o:+d}]" if context else m for o in offsets for m in modalities]


def _train_seconds(run_dir: Path, column: str = "seconds") -> float | None:
    """The sum of ``column`` over a run's epochs (0 without metrics, None without the column)."""
    metrics = run_dir / RUN_METRICS
    if not metrics.exists():
        return 0.0
    with metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not all(row.get(column) for row in rows):
        return None  # a run from before the column existed (or resumed across that change)
    return round(sum(float(row[column]) for row in rows), 1)


def _cpu_seconds(runs: Sequence[Path]) -> dict[str, list[float | None]]:
    """``training_cpu_seconds`` per member when the runs recorded CPU time (else nothing)."""
    cpu = [_train_seconds(run, "cpu_seconds") for run in runs]
    return {"training_cpu_seconds": cpu} if any(c is not None for c in cpu) else {}


def read_card(path: str | Path) -> dict[str, Any]:
    """A model card (``<name>.json``)."""
    return dict(json.loads(Path(path).read_text()))
