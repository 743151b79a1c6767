"""Training configuration: :class:`TrainConfig` (saved as a run's ``config.json``) and presets.

A preset is a JSON file in ``gliomaseg/train/presets/``; :func:`load_config` reads one (or any
config file) and applies command-line overrides; :func:`choose_preset` picks one for the data
and the machine when none is named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from gliomaseg.core.config import from_dict
from gliomaseg.core.targets import TargetSpec
from gliomaseg.io.cache import is_cache, load_index
from gliomaseg.io.layouts import discover
from gliomaseg.models import ModelConfig
from gliomaseg.models.resize import check_scale
from gliomaseg.train.augment import AugmentConfig
from gliomaseg.train.losses import LossConfig
from gliomaseg.train.runs import resolve_device

CONFIG_DIR = Path(__file__).resolve().parent / "presets"

#: The preset ``gliomaseg train`` uses when none is named, by kind of data (:func:`data_kind`)
#: and device: on a CPU, presets sized so that an epoch takes minutes, not hours.
DEFAULT_PRESETS: dict[tuple[str, str], str] = {
    ("brats", "cpu"): "brats-cpu",
    ("lgg", "cpu"): "lgg-cpu-128",
    ("brats", "cuda"): "brats-regions",
    ("lgg", "cuda"): "residual-unet-lgg-dice-bce",
}


#: Model settings filled in from the data when the network is built, not saved with the run.
_DERIVED_MODEL_KEYS = ("in_channels", "out_channels")

#: Defaults of a config read from a dict without these keys.
_DEFAULT_TARGET = "regions"
_DEFAULT_MODEL: dict[str, Any] = {"name": "unet", "features": [16, 32, 64, 128]}
_DEFAULT_LOSS: dict[str, Any] = {"name": "dice_bce"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved as ``config.json``).

    Attributes:
        name: Preset or run name.
        description: One line: what configuration this reproduces.
        model: The network's settings. ``in_channels`` and ``out_channels`` are filled in
            from the data's modalities, ``context`` and ``target`` when the network is built
            (:func:`gliomaseg.train.builders.build_from_config`), so ``config.json`` leaves
            them out; read from a dict, a missing ``head`` is the target's kind.
        loss: The loss's settings.
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
        augment: The augmentation's settings.
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
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig.from_dict(
            {**_DEFAULT_MODEL, "head": "sigmoid", "out_channels": 3}  # as _DEFAULT_TARGET wants
        )
    )
    loss: LossConfig = field(default_factory=lambda: LossConfig.from_dict(_DEFAULT_LOSS))
    target: Any = _DEFAULT_TARGET
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
    augment: AugmentConfig = field(default_factory=AugmentConfig)
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
        """Plain JSON-ready dict (``config.json``; :meth:`from_dict` inverts it)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        model = self.model.to_dict()
        data["model"] = {k: v for k, v in model.items() if k not in _DERIVED_MODEL_KEYS}
        data["loss"] = self.loss.to_dict()
        data["augment"] = self.augment.to_dict()
        return dict(json.loads(json.dumps(data)))  # tuples become lists

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict (a preset, ``config.json``, a checkpoint's ``train_config``,
        old or new); unknown keys are an error naming them."""
        values = dict(data)
        target = TargetSpec.from_dict(values.get("target", _DEFAULT_TARGET))
        values["model"] = ModelConfig.from_dict(
            {
                "head": target.kind,
                **values.get("model", _DEFAULT_MODEL),
                "out_channels": target.channels,
            }
        )
        values["loss"] = LossConfig.from_dict(values.get("loss", _DEFAULT_LOSS))
        values["augment"] = AugmentConfig.from_dict(values.get("augment"))
        config = from_dict(cls, values, what="training option", tuples=("modalities", "patch_size"))
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
        TargetSpec.from_dict(self.target)
        if not 0.0 <= self.extra_fraction < 1.0:
            raise ValueError(f"extra_fraction {self.extra_fraction} must be in [0, 1)")
        if not 0.0 <= self.augment.missing <= 1.0:
            raise ValueError(f"augment.missing {self.augment.missing} must be in [0, 1]")
        if self.augment.missing > 0 and self.spatial_dims == 3:
            raise ValueError("augment.missing is supported for 2D models only; use 0 for 3D")
        if self.extra_data is not None and self.spatial_dims == 3:
            raise ValueError("extra_data is supported for 2D models only")

    @property
    def spatial_dims(self) -> int:
        return self.model.spatial_dims

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
    if is_cache(data):
        return "brats" if "t2" in load_index(data)["modalities"] else "lgg"
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
