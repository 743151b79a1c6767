"""Training loop: presets, patient-level validation, atomic checkpoints, exact resume, DDP.

A run folder holds ``config.json``, ``metrics.csv``, ``curves.png`` and
``checkpoints/{last,best}.pt``. ``last.pt`` is rewritten atomically at the end of every epoch,
every ``checkpoint_minutes`` minutes inside an epoch (and every ``save_every_steps`` steps)
with the model, optimizer, scheduler, torch RNG state and the position in the epoch; batches
are a pure function of ``(seed, epoch)`` (see :class:`gliomaseg.train.datasets.EpochSampler`), so
``--resume`` continues with exactly the batch an uninterrupted run would have seen next.
A resume may extend the run (``epochs``, re-planning the learning-rate schedule) or move it
to another device; every other setting is the run's own (:func:`resume_changes`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomaseg.core.errors import InputError
from gliomaseg.core.targets import TargetSpec
from gliomaseg.io.atomic import remove_orphans, write_json_atomic
from gliomaseg.io.cache import cache_axes, load_index, open_case
from gliomaseg.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from gliomaseg.models.inference import autocast, predict_volume, predict_volume_3d
from gliomaseg.models.resize import check_scale
from gliomaseg.train.augment import AugmentConfig
from gliomaseg.train.datasets import (
    ConcatSlices,
    EpochSampler,
    PatchDataset,
    PreparedCases,
    SliceDataset,
)
from gliomaseg.train.runs import (
    CheckpointClock,
    RunState,
    TrainingProgress,
    append_metrics,
    dist_info,
    format_duration,
    plot_curves,
    resolve_device,
    use_bf16,
)

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "presets"

#: The preset ``gliomaseg train`` uses when none is named, by kind of data (:func:`data_kind`)
#: and device: on a CPU, presets sized so that an epoch takes minutes, not hours.
DEFAULT_PRESETS: dict[tuple[str, str], str] = {
    ("brats", "cpu"): "brats-cpu",
    ("lgg", "cpu"): "lgg-cpu-128",
    ("brats", "cuda"): "brats-regions",
    ("lgg", "cuda"): "residual-unet-lgg-dice-bce",
}

#: On a CPU, a projected epoch longer than this many minutes gets a one-line warning that
#: names the CPU preset (measured on the run's first steps).
SLOW_EPOCH_MINUTES = 15.0

#: Default interval of the time-based checkpoints (minutes).
CHECKPOINT_MINUTES = 5.0

#: Settings a resume may change (:func:`resume_changes`); every other one is the run's own.
RESUME_CHANGES = ("epochs", "device", "workers")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved as ``config.json``).

    Attributes:
        name: Preset or run name.
        description: One line: what configuration this reproduces.
        model: :class:`gliomaseg.models.ModelConfig` as a dict (``in_channels`` and
            ``out_channels`` are filled in from ``modalities``/``context``/``target``).
        loss: :class:`gliomaseg.train.losses.LossConfig` as a dict.
        target: Output definition: a name from :data:`gliomaseg.core.targets.TARGETS` or a dict.
        modalities: Cache channels fed to the network, in order (None: all of the cache's).
        patch_size: (H, W) for 2D or (Z, H, W) for 3D models; slices are padded/cropped to it.
        input_scale: In-plane factor in (0, 1] applied to every slice before cropping or
            padding to ``patch_size``, in training, validation and ``segment`` (2D models;
            e.g. 0.5 trains on 256x256 slices at 128x128; see :mod:`gliomaseg.models.resize`).
        context: Neighbouring slices each side as extra channels (2.5D); 2D only.
        min_tumour_pixels: Training slices need at least this many tumour pixels when
            ``tumour_only`` (published configurations keep slices with > 50 pixels: 51).
        tumour_only: Train on tumour slices only.
        tumour_fraction: Fraction of each epoch drawn from tumour slices (oversampling).
        epochs, steps_per_epoch, batch_size: Schedule; an epoch is a fixed number of steps.
        optimizer: ``adam`` or ``adamw``; ``lr``, ``weight_decay`` as usual.
        scheduler: ``plateau`` (ReduceLROnPlateau on validation Dice), ``cosine`` or ``none``.
        early_stopping: Stop after this many epochs without a better validation Dice.
        augment: :class:`gliomaseg.train.augment.AugmentConfig` as a dict.
        fold: Validation fold from the cache index (-1: train on everything, no validation).
        extra_data: A second dataset folder or cache whose labelled cases only ever join
            training (never validation), e.g. automatically labelled cases.
        extra_fraction: Share of each epoch's samples drawn from ``extra_data`` (the rest from
            the main data), whatever the two sizes: below their share of slices it weights
            them lower.
        val_max_cases: Validate on at most this many validation cases (None: all).
        seed: Seeds the sampler, augmentation and weight initialisation.
        device: ``auto``, ``cpu`` or ``cuda``.
        workers: Data-loader worker processes.
        amp: bf16 autocast on CUDA and on CPUs with native bf16 (see
            :func:`gliomaseg.train.runs.use_bf16`; ignored elsewhere).
        channels_last: channels-last memory format (CUDA only).
        save_every_steps: Also checkpoint every N steps inside an epoch (0: epoch ends only).
    """

    name: str = "custom"
    description: str = ""
    model: dict[str, Any] = field(
        default_factory=lambda: {"name": "unet", "features": [16, 32, 64, 128]}
    )
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "dice_bce"})
    target: Any = "regions"
    modalities: tuple[str, ...] | None = None
    patch_size: tuple[int, ...] = (192, 192)
    input_scale: float = 1.0
    context: int = 0
    min_tumour_pixels: int = 0
    tumour_only: bool = False
    tumour_fraction: float | None = 0.5
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 4
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "plateau"
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    early_stopping: int | None = None
    augment: dict[str, Any] = field(default_factory=dict)
    fold: int = 0
    extra_data: str | None = None
    extra_fraction: float = 0.25
    val_max_cases: int | None = None
    val_batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    amp: bool = True
    channels_last: bool = True
    save_every_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are an error naming them."""
        from gliomaseg.core.config import from_dict

        config = from_dict(cls, data, what="training option", tuples=("modalities", "patch_size"))
        config.validate()
        return config

    def validate(self) -> None:
        """Check values a user can get wrong, with actionable messages."""
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer '{self.optimizer}' must be 'adam' or 'adamw'")
        if self.scheduler not in ("plateau", "cosine", "none"):
            raise ValueError(f"scheduler '{self.scheduler}' must be 'plateau', 'cosine' or 'none'")
        if min(self.epochs, self.steps_per_epoch, self.batch_size) < 1:
            raise ValueError("epochs, steps_per_epoch and batch_size must be >= 1")
        if len(self.patch_size) != self.spatial_dims:
            raise ValueError(
                f"patch_size {self.patch_size} has {len(self.patch_size)} axes but the model is "
                f"{self.spatial_dims}D"
            )
        check_scale(self.input_scale)
        if self.input_scale != 1.0 and self.spatial_dims == 3:
            raise ValueError("input_scale is supported for 2D models only; use 1.0 for 3D")
        AugmentConfig.from_dict(self.augment)
        TargetSpec.from_dict(self.target)
        if not 0.0 <= self.extra_fraction < 1.0:
            raise ValueError(f"extra_fraction {self.extra_fraction} must be in [0, 1)")
        if self.extra_data is not None and self.spatial_dims == 3:
            raise ValueError("extra_data is supported for 2D models only")

    @property
    def spatial_dims(self) -> int:
        return int(self.model.get("spatial_dims", 2))

    @property
    def target_spec(self) -> TargetSpec:
        return TargetSpec.from_dict(self.target)


# --------------------------------------------------------------------------- presets


def list_presets() -> list[str]:
    """Names of the shipped presets (``gliomaseg/train/presets/*.json``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(path_or_preset: str | Path, **overrides: Any) -> TrainConfig:
    """A preset by name or a JSON config file, with command-line overrides applied."""
    path = Path(path_or_preset)
    if not path.suffix:
        path = CONFIG_DIR / f"{path_or_preset}.json"
        if not path.exists():
            raise ValueError(f"unknown preset '{path_or_preset}'; choose one of {list_presets()}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err}); fix the config file") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data)


def data_kind(data: str | Path) -> str:
    """``lgg`` for LGG data (pre-contrast, FLAIR, post-contrast; no T2), else ``brats``.

    A prepared cache is recognised by its modalities, a raw folder by its layout.
    """
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such file or folder; check the path")
    if (data / "index.json").exists():
        return "brats" if "t2" in load_index(data)["modalities"] else "lgg"
    from gliomaseg.io.layouts import discover

    refs, _ = discover(data)
    return "lgg" if refs and all(r.layout == "lgg-tiff" for r in refs) else "brats"


def choose_preset(data: str | Path, device: str = "auto") -> tuple[str, str]:
    """The preset that fits ``data`` and the machine (:data:`DEFAULT_PRESETS`).

    Returns:
        (preset name, one line saying what was chosen and why).
    """
    kind, dev = data_kind(data), resolve_device(device).type
    name = DEFAULT_PRESETS[(kind, dev)]
    config = load_config(name)
    where = f"cpu, {torch.get_num_threads()} threads" if dev == "cpu" else dev
    size = "x".join(str(n) for n in config.patch_size)
    return name, (
        f"no --preset given: {name} for {'LGG' if kind == 'lgg' else 'four-modality BraTS'} "
        f"data on {where} ({config.epochs} epochs x {config.steps_per_epoch} steps x "
        f"{config.batch_size} samples of {size}; --list-presets shows the others)"
    )


# --------------------------------------------------------------------------- run state


def resolve_data(data: str | Path, run_dir: Path, *, progress: bool, name: str = "cache") -> Path:
    """A prepared cache for ``data``: itself if already one, else prepared into ``run_dir/name``."""
    data = Path(data)
    if (data / "index.json").exists():
        return data
    from gliomaseg.prepare.workflow import prepare_dataset

    cache = run_dir / name
    result = prepare_dataset(data, cache, progress=progress)
    if not result.n_cases and len(result.failures) == 1:
        raise InputError(result.failures[0][1])  # the one case's own error, said once
    for path, msg in result.failures:
        log.error("skipped %s: %s", path, msg)
    if not result.n_cases:
        raise InputError(f"{data}: no usable case to train on (see the errors above); fix the data")
    return cache


def _split(cache: Path, config: TrainConfig) -> tuple[list[str], list[str]]:
    """Training and validation case ids from the cache's patient-level folds."""
    index = load_index(cache)
    labelled = [c for c in index["cases"] if c["labelled"]]
    if not labelled:
        raise ValueError(f"{cache}: no labelled cases to train on")
    if config.fold < 0:
        return [c["case_id"] for c in labelled], []
    folds = index.get("folds") or []
    if config.fold >= len(folds):
        raise ValueError(
            f"{cache}: fold {config.fold} does not exist ({len(folds)} folds); use --fold -1 to "
            "train on all cases, or prepare with more patients"
        )
    val_patients = set(folds[config.fold]["val"])
    train = [c["case_id"] for c in labelled if c["patient"] not in val_patients]
    val = [c["case_id"] for c in labelled if c["patient"] in val_patients]
    return train, val


def resume_point(run_dir: Path) -> tuple[dict[str, Any] | None, TrainConfig, str]:
    """Where ``--resume run_dir`` starts: (last checkpoint or None, config, data).

    A run killed before its first checkpoint still has its ``config.json``: it starts again
    from there (training is deterministic, so nothing but time is lost).

    Raises:
        FileNotFoundError: no such folder, or no run in it (one line with the fix).
    """
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists():
        ckpt = load_checkpoint(last)
        return ckpt, TrainConfig.from_dict(ckpt["train_config"]), ckpt["data"]
    saved_file = run_dir / "config.json"
    if not saved_file.exists():
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run folder; check the path")
        raise FileNotFoundError(
            f"{run_dir}: no training run here (no checkpoints/last.pt, no config.json); start "
            f"one with 'gliomaseg train --data DATA -o {run_dir}'"
        )
    try:
        saved = json.loads(saved_file.read_text())
        data = str(saved.pop("data"))
    except (ValueError, KeyError, AttributeError):
        raise InputError(
            f"{saved_file}: not a training run's config.json (no 'data'); start a new run"
        ) from None
    saved.pop("cache", None)
    log.info(
        "%s: no checkpoint yet (the run stopped before its first one); starting it again "
        "from its config.json",
        run_dir,
    )
    return None, TrainConfig.from_dict(saved), data


def resume_changes(
    config: TrainConfig, state: RunState, changes: Mapping[str, Any], *, run_dir: Path
) -> tuple[TrainConfig, list[str]]:
    """Apply the settings a resume may change (:data:`RESUME_CHANGES`), refusing the others.

    ``epochs`` extends (or shortens) the run: the learning-rate schedule is re-planned over
    the new length when the run resumes. ``device`` and ``workers`` only say where and how
    it runs. A setting given with the run's own value is no change.

    Returns:
        (the config to continue with, one line per change for the log).

    Raises:
        InputError: a setting that cannot change on resume, or ``epochs`` below the epochs
            already trained or past an early stop; one line with the fix.
    """
    given = {k: v for k, v in changes.items() if v is not None}
    fixed = [k for k, v in given.items() if k not in RESUME_CHANGES and getattr(config, k) != v]
    if fixed:
        flags = ", ".join(
            f"--{k.replace('_', '-')} (the run has {getattr(config, k)!r})" for k in fixed
        )
        raise InputError(
            f"{run_dir}: --resume continues the run as it was configured, so {flags} cannot "
            f"change; resume without it (only --epochs, --device and --workers may change), "
            f"or start a new run with -o NEW_RUN_DIR"
        )
    notes = []
    epochs = given.get("epochs", config.epochs)
    if epochs != config.epochs:
        if epochs < state.epoch or (epochs == state.epoch and state.step):
            raise InputError(
                f"{run_dir}: --epochs {epochs} is fewer than the {state.epoch} epoch(s) the run "
                "has trained; give a larger number to extend it"
            )
        if state.stopped_early:
            raise InputError(
                f"{run_dir}: the run stopped early at epoch {state.epoch} (no better validation "
                "Dice); --epochs cannot extend it: start a new run with -o NEW_RUN_DIR"
            )
        verb = "extending" if epochs > config.epochs else "shortening"
        notes.append(f"{verb} the run from {config.epochs} to {epochs} epochs")
    device = given.get("device", config.device)
    if device != config.device:
        notes.append(
            f"continuing on --device {device} (the run was started with {config.device}); "
            "its numbers may differ in the last bits from an uninterrupted run"
        )
    workers = given.get("workers", config.workers)
    if workers != config.workers:
        notes.append(f"loading data with {workers} worker(s) (the run used {config.workers})")
    return replace(config, epochs=epochs, device=device, workers=workers), notes


def replan_schedule(scheduler: Any, optimizer: torch.optim.Optimizer, config: TrainConfig) -> str:
    """Fit a resumed run's learning-rate schedule to a new ``config.epochs``; says how.

    A cosine schedule is re-planned from the base learning rate over the new length and the
    learning rate set to its value at the epochs already done (a finished run's learning
    rate, near zero, rises again); a plateau schedule follows the validation Dice and goes
    on unchanged; without a schedule the learning rate stays.
    """
    old = optimizer.param_groups[0]["lr"]
    if config.scheduler == "cosine" and scheduler is not None:
        scheduler.T_max = config.epochs
        done = scheduler.last_epoch
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            eta = scheduler.eta_min
            group["lr"] = eta + (base - eta) * (1 + math.cos(math.pi * done / config.epochs)) / 2
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
        return (
            f"the cosine learning-rate schedule is re-planned over {config.epochs} epochs: "
            f"lr {optimizer.param_groups[0]['lr']:.2e} at epoch {done} (was {old:.2e})"
        )
    if config.scheduler == "plateau":
        return f"the plateau schedule goes on as before (lr {old:.2e}; it follows validation)"
    return f"the learning rate stays {old:.2e} (no schedule)"


def _channels(cache: Path, config: TrainConfig) -> tuple[list[int], tuple[str, ...]]:
    available = tuple(load_index(cache)["modalities"])
    wanted = config.modalities or available
    missing = [m for m in wanted if m not in available]
    if missing:
        raise ValueError(
            f"{cache}: missing modality {', '.join(missing)} (cache has {', '.join(available)}; "
            f"the model needs {', '.join(wanted)})"
        )
    return [available.index(m) for m in wanted], tuple(wanted)


def build_from_config(
    config: TrainConfig, n_modalities: int
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network for a config, with input/output channels filled in."""
    from gliomaseg.models import ModelConfig, build_model

    model_cfg = dict(config.model)
    model_cfg["spatial_dims"] = config.spatial_dims
    model_cfg["in_channels"] = n_modalities * (2 * config.context + 1)
    model_cfg["out_channels"] = config.target_spec.channels
    model_cfg.setdefault("head", config.target_spec.kind)
    mc = ModelConfig.from_dict(model_cfg)
    return build_model(mc), mc.to_dict()


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig) -> Any:
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    return None


# --------------------------------------------------------------------------- validation


def validate(
    model: torch.nn.Module,
    cache: Path,
    case_ids: list[str],
    *,
    config: TrainConfig,
    channels: list[int],
    device: torch.device,
    multiple: int,
) -> dict[str, float]:
    """Per-patient (volume) and slice-level Dice, precision and recall per output channel.

    Metrics are computed for the network's own output channels and, for multi-class targets,
    also for every BraTS region (WT, TC, ET) and label (NCR/NET, ED, ET) of the decoded map.

    Returns a flat dict: ``dice_<name>``, ``precision_<name>``, ``recall_<name>`` (volume level,
    i.e. per patient, mean over cases), ``slice_dice_<name>`` (mean over slices with tumour in
    either mask), and ``dice_mean`` (mean volume Dice over the network's non-background
    channels, used for model selection).
    """
    from gliomaseg.evaluate.metrics import confusion, dice, precision, recall

    target = config.target_spec
    groups = _validation_groups(target)
    sums: dict[str, list[float]] = {}
    for case_id in case_ids[: config.val_max_cases]:
        image, label, _ = open_case(cache, case_id)
        if label is None:
            continue
        if config.spatial_dims == 3:
            probs = predict_volume_3d(
                model,
                image,
                target=target,
                roi_size=tuple(config.patch_size),
                channels=channels,
                device=device,
                amp=use_bf16(device, config.amp),
            )
        else:
            probs = predict_volume(
                model,
                image,
                target=target,
                multiple=multiple,
                batch_size=config.val_batch_size,
                context=config.context,
                channels=channels,
                device=device,
                amp=use_bf16(device, config.amp),
                input_scale=config.input_scale,
            )
        pred = target.decode(probs)
        ref = np.asarray(label)
        for name, group in groups:
            p, r = np.isin(pred, group), np.isin(ref, group)
            counts = confusion(p, r)
            for key, fn in (("dice", dice), ("precision", precision), ("recall", recall)):
                sums.setdefault(f"{key}_{name}", []).append(float(fn(counts)))
            per_slice = [
                float(dice(confusion(p[z], r[z])))
                for z in range(ref.shape[0])
                if p[z].any() or r[z].any()
            ]
            if per_slice:
                sums.setdefault(f"slice_dice_{name}", []).append(float(np.mean(per_slice)))
    out = {k: float(np.mean(v)) for k, v in sums.items()}
    selected = [n for n, g in zip(target.names, target.groups, strict=True) if 0 not in g]
    dices = [out[f"dice_{n}"] for n in selected if f"dice_{n}" in out]
    out["dice_mean"] = float(np.mean(dices)) if dices else float("nan")
    return out


def _validation_groups(target: TargetSpec) -> list[tuple[str, tuple[int, ...]]]:
    """(name, internal codes) of every structure validated, the output channels first."""
    from gliomaseg.core.labels import REGIONS

    groups = {n: g for n, g in zip(target.names, target.groups, strict=True) if 0 not in g}
    if len(target.groups) > 1 or target.groups[0] != (1, 2, 3):
        for name, codes in {**REGIONS, "NCR/NET": (1,), "ED": (2,)}.items():
            groups.setdefault(name, codes)
    return list(groups.items())


# --------------------------------------------------------------------------- training


def train(
    config: TrainConfig | None,
    data: str | Path | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    changes: Mapping[str, Any] | None = None,
    progress: bool = True,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    log_every: float = 30.0,
) -> RunState:
    """Train (or resume) a run; returns the final run state.

    Args:
        config: The settings; None when resuming (the run's own are used).
        data: Dataset folder or prepared cache; None when resuming.
        run_dir: The run folder.
        resume: Continue the run in ``run_dir`` exactly where its last checkpoint stopped
            (from the start when it was killed before its first checkpoint).
        changes: On resume, settings given again (e.g. the command line's); those in
            :data:`RESUME_CHANGES` apply and are logged, any other that differs from the
            run's is refused (:func:`resume_changes`).
        progress: A progress bar on a terminal, progress lines every ``log_every`` seconds
            elsewhere (epoch lines are logged either way).
        checkpoint_minutes: Also checkpoint inside an epoch when this many minutes passed
            since the last checkpoint (0: epoch ends and ``save_every_steps`` only).
        log_every: Seconds between progress lines when stderr is not a terminal.

    Raises:
        ValueError: bad config, missing modalities, a corrupt checkpoint, an existing run
            folder without ``resume``, a change a resume cannot make.
    """
    run_dir = Path(run_dir)
    rank, world = dist_info()
    clock = CheckpointClock(checkpoint_minutes)
    ckpt: dict[str, Any] | None = None
    notes: list[str] = []
    old_epochs = 0
    if resume:
        remove_orphans(run_dir / "checkpoints")  # half-written checkpoints of a killed run
        remove_orphans(run_dir)
        ckpt, config, data = resume_point(run_dir)
        old_epochs = config.epochs
        done = RunState(**ckpt["state"]) if ckpt is not None else RunState()
        config, notes = resume_changes(config, done, changes or {}, run_dir=run_dir)
    elif (run_dir / "checkpoints" / "last.pt").exists():
        raise ValueError(f"{run_dir}: holds a run already; pass --resume {run_dir} or another -o")
    if config is None or data is None:
        raise ValueError("train needs a config and data unless resuming")
    data = Path(data).absolute()  # stored in checkpoints: runs are resumed and bundled elsewhere
    device = resolve_device(config.device)
    if world > 1:
        _init_distributed(device)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    for note in notes:
        log.info("%s", note)
    log.info(
        "training on %s with %s: %d epochs x %d steps x batch %d; %s",
        f"cpu ({torch.get_num_threads()} threads)" if device.type == "cpu" else device,
        "bf16 autocast" if use_bf16(device, config.amp) else "float32",
        config.epochs,
        config.steps_per_epoch,
        config.batch_size,
        f"a checkpoint every {checkpoint_minutes:g} min and at epoch ends"
        if checkpoint_minutes
        else "a checkpoint at epoch ends",
    )
    for source in (data, config.extra_data):  # before anything is written
        if source is not None and not Path(source).exists():
            raise FileNotFoundError(f"{source}: no such file or folder; check the path")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        cache = resolve_data(data, run_dir, progress=progress and rank == 0)
    except BaseException:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()  # no empty run folder left behind by bad data
        raise
    channels, modalities = _channels(cache, config)
    train_ids, val_ids = _split(cache, config)
    extra: tuple[Path, list[int], list[str]] | None = None
    if config.extra_data is not None:
        extra_cache = resolve_data(
            config.extra_data, run_dir, progress=progress and rank == 0, name="extra_cache"
        )
        extra_channels, _ = _channels(extra_cache, config)
        if cache_axes(extra_cache) != cache_axes(cache):
            raise ValueError(
                f"{config.extra_data}: prepared in another orientation than {data} (an older "
                "gliomaseg); prepare both again with the same version"
            )
        extra_ids = [c["case_id"] for c in load_index(extra_cache)["cases"] if c["labelled"]]
        if not extra_ids:
            raise ValueError(f"{config.extra_data}: no labelled cases to add to training")
        extra = (extra_cache, extra_channels, extra_ids)
    torch.manual_seed(config.seed)
    model, model_cfg = build_from_config(config, len(modalities))
    from gliomaseg.models import ModelConfig, input_multiple

    multiple = input_multiple(ModelConfig.from_dict(model_cfg))
    model.to(device)
    if device.type == "cuda" and config.channels_last and config.spatial_dims == 2:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config)
    state = RunState()
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        state = RunState(**ckpt["state"])
        torch.set_rng_state(ckpt["torch_rng"])
        if config.epochs != old_epochs:
            log.info("%s", replan_schedule(scheduler, optimizer, config))
    if rank == 0 and (ckpt is None or config.epochs != old_epochs):
        write_json_atomic(
            run_dir / "config.json", {**config.to_dict(), "data": str(data), "cache": str(cache)}
        )
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    from gliomaseg.train.losses import LossConfig, build_loss

    loss_fn = build_loss(LossConfig.from_dict(config.loss))
    loader, sampler = _loader(cache, train_ids, config, channels, rank, world, extra=extra)
    meta = {
        "model_config": model_cfg,
        "target": config.target_spec.to_dict(),
        "modalities": list(modalities),
        "context": config.context,
        "input_scale": float(config.input_scale),
        "data": str(data),
        "train_config": config.to_dict(),
        "preprocessing": {
            "zscore": "per modality over brain voxels",
            "crop": "brain bounding box",
            "axes": cache_axes(cache),
        },
    }
    bar = TrainingProgress(
        enabled=progress and rank == 0,
        total=config.epochs * config.steps_per_epoch,
        done=state.epoch * config.steps_per_epoch + state.step,
        steps_per_epoch=config.steps_per_epoch,
        log_every=log_every,
    )
    pace = _PaceCheck(config, device, enabled=rank == 0)
    try:
        while state.epoch < config.epochs and not state.stopped_early:
            sampler.set_epoch(state.epoch, skip=state.step * config.batch_size)
            epoch_start = time.perf_counter()
            net.train()
            for batch in loader:
                loss = _step(net, loss_fn, optimizer, batch, device=device, config=config)
                state.epoch_loss_sum += loss
                state.step += 1
                state.global_step += 1
                bar.advance(loss)
                pace.after_step()
                every = config.save_every_steps
                if (
                    rank == 0
                    and state.step < config.steps_per_epoch
                    and ((every and state.step % every == 0) or clock.due())
                ):
                    _save(
                        run_dir / "checkpoints" / "last.pt",
                        model,
                        optimizer,
                        scheduler,
                        state,
                        meta,
                    )
                    clock.reset()
            if world > 1:
                _sync_buffers(model)
            metrics = (
                validate(
                    model,
                    cache,
                    val_ids,
                    config=config,
                    channels=channels,
                    device=device,
                    multiple=multiple,
                )
                if val_ids
                else {}
            )
            train_loss = state.epoch_loss_sum / state.step if state.step else float("nan")
            _end_epoch(state, scheduler, metrics, config)
            lr = optimizer.param_groups[0]["lr"]
            row = {
                "epoch": state.epoch,
                "global_step": state.global_step,
                "train_loss": train_loss,
                "lr": lr,
                "seconds": round(time.perf_counter() - epoch_start, 2),
                **metrics,
            }
            bar.epoch_done(state.epoch, row)
            if rank == 0:
                append_metrics(run_dir / "metrics.csv", row)
                _save(run_dir / "checkpoints" / "last.pt", model, optimizer, scheduler, state, meta)
                clock.reset()
                if state.best_epoch == state.epoch:
                    _save(
                        run_dir / "checkpoints" / "best.pt",
                        model,
                        optimizer,
                        scheduler,
                        state,
                        meta,
                    )
                plot_curves(run_dir)
    finally:
        bar.close()
        if world > 1:
            _write_rank_digest(run_dir, model, rank)
            torch.distributed.destroy_process_group()
    if rank == 0 and state.best_epoch < 0 and (run_dir / "checkpoints" / "last.pt").exists():
        # Without validation (or no validation Dice) the last weights are the best we have.
        from gliomaseg.io.atomic import atomic_path

        with atomic_path(run_dir / "checkpoints" / "best.pt") as tmp:
            shutil.copyfile(run_dir / "checkpoints" / "last.pt", tmp)
    return state


def _sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP averages gradients, so parameters agree on every rank, but each rank updates its own
    running statistics in ``forward``; broadcasting them at epoch ends (as DDP itself does
    before each forward) keeps validation and checkpoints identical across ranks.
    """
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)


def _init_distributed(device: torch.device) -> None:
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def _write_rank_digest(run_dir: Path, model: torch.nn.Module, rank: int) -> None:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    (run_dir / f"weights_rank{rank}.sha256").write_text(digest.hexdigest() + "\n")


def _loader(
    cache: Path,
    train_ids: list[str],
    config: TrainConfig,
    channels: list[int],
    rank: int,
    world: int,
    *,
    extra: tuple[Path, list[int], list[str]] | None = None,
) -> tuple[torch.utils.data.DataLoader[Any], EpochSampler]:
    cases = PreparedCases(cache, train_ids)
    dataset: SliceDataset | PatchDataset | ConcatSlices
    groups: list[int] | None = None
    if config.spatial_dims == 3:
        dataset = PatchDataset(
            cases,
            target=config.target_spec,
            size=tuple(config.patch_size),  # type: ignore[arg-type]
            flip=AugmentConfig.from_dict(config.augment).flip,
            channels=channels,
        )
        has_tumour = [True] * len(train_ids)
    else:
        dataset = _slice_dataset(cases, config, channels)
        has_tumour = [s.tumour_pixels > 0 for s in dataset.slices]
        if extra is not None:
            extra_set = _slice_dataset(PreparedCases(extra[0], extra[2]), config, extra[1])
            groups = [0] * len(dataset) + [1] * len(extra_set)
            has_tumour += [s.tumour_pixels > 0 for s in extra_set.slices]
            dataset = ConcatSlices([dataset, extra_set])
    sampler = EpochSampler(
        has_tumour,
        length=config.steps_per_epoch * config.batch_size * world,
        seed=config.seed,
        tumour_fraction=config.tumour_fraction,
        rank=rank,
        world_size=world,
        groups=groups,
        group_fractions=[1.0 - config.extra_fraction, config.extra_fraction],
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=False,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler


def _slice_dataset(cases: PreparedCases, config: TrainConfig, channels: list[int]) -> SliceDataset:
    """The 2D training samples of ``cases`` that ``config`` asks for."""
    slices = cases.slices(
        min_tumour_pixels=config.min_tumour_pixels, tumour_only=config.tumour_only
    )
    return SliceDataset(
        cases,
        slices,
        target=config.target_spec,
        size=tuple(config.patch_size),  # type: ignore[arg-type]
        context=config.context,
        channels=channels,
        augment_config=AugmentConfig.from_dict(config.augment),
        input_scale=config.input_scale,
    )


def _step(
    net: torch.nn.Module,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    *,
    device: torch.device,
    config: TrainConfig,
) -> float:
    x = batch["image"].to(device, non_blocking=True)
    y = batch["target"].to(device, non_blocking=True)
    if device.type == "cuda" and config.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    if config.target_spec.kind == "softmax":
        y = y[:, None]  # (N, 1, ...) class indices, as MONAI's losses expect
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, use_bf16(device, config.amp)):
        logits = net(x)
    loss = loss_fn(logits.float(), y)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss became {loss.item()}; lower the learning rate or check the data"
        )
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _end_epoch(
    state: RunState, scheduler: Any, metrics: dict[str, float], config: TrainConfig
) -> None:
    state.epoch += 1
    state.step = 0
    state.epoch_loss_sum = 0.0
    score = metrics.get("dice_mean", float("nan"))
    if math.isnan(score):
        if scheduler is not None and config.scheduler == "cosine":
            scheduler.step()
        return
    if score > state.best_metric:
        state.best_metric, state.best_epoch, state.bad_epochs = score, state.epoch, 0
    else:
        state.bad_epochs += 1
    if scheduler is not None:
        scheduler.step(score) if config.scheduler == "plateau" else scheduler.step()
    if config.early_stopping and state.bad_epochs >= config.early_stopping:
        state.stopped_early = True
        log.info("early stopping: no better validation Dice for %d epochs", state.bad_epochs)


class _PaceCheck:
    """Warns once when, on a CPU, the first steps project an epoch over SLOW_EPOCH_MINUTES.

    The first step is left out of the measurement (it pays for warm-up); the next five are
    timed.
    """

    STEPS = 5

    def __init__(self, config: TrainConfig, device: torch.device, *, enabled: bool) -> None:
        self.config, self.enabled = config, enabled and device.type == "cpu"
        self.steps, self.start = 0, 0.0

    def after_step(self) -> None:
        if not self.enabled:
            return
        self.steps += 1
        if self.steps == 1:
            self.start = time.perf_counter()
        elif self.steps == 1 + self.STEPS:
            self.enabled = False
            per_step = (time.perf_counter() - self.start) / self.STEPS
            message = slow_epoch_warning(self.config, per_step)
            if message:
                log.warning("%s", message)


def slow_epoch_warning(config: TrainConfig, seconds_per_step: float) -> str | None:
    """One line when an epoch at ``seconds_per_step`` takes over SLOW_EPOCH_MINUTES on a CPU."""
    epoch_s = seconds_per_step * config.steps_per_epoch
    if epoch_s < 60 * SLOW_EPOCH_MINUTES:
        return None
    kind = "lgg" if config.target_spec.channels == 1 else "brats"
    cpu_preset = DEFAULT_PRESETS[(kind, "cpu")]
    fix = (
        f"--preset {cpu_preset} is sized for a CPU, or lower --steps-per-epoch/--batch-size"
        if config.name != cpu_preset
        else "lower --steps-per-epoch or --batch-size, or train on a GPU"
    )
    return (
        f"an epoch of {config.name} ({config.steps_per_epoch} steps at "
        f"{seconds_per_step:.1f} s/step) will take about {format_duration(epoch_s)} on this "
        f"CPU, the run about {format_duration(epoch_s * config.epochs)}; {fix}"
    )


def _save(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: RunState,
    meta: dict[str, Any],
) -> None:
    save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "kind": "segmentation",
            **meta,
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "state": asdict(state),
            "torch_rng": torch.get_rng_state(),
        },
    )
