"""Options of a ``segment`` run (no torch, no scipy: the command line reads them first)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PostprocessConfig:
    """Cleaning applied to a predicted label map (both recorded in the summary).

    Attributes:
        min_component_ml: Connected tumour components (26-connected, whole tumour) smaller
            than this are removed; 0 disables.
        et_to_ncr_below_ml: When the total enhancing-tumour volume is below this, relabel it
            as necrosis/non-enhancing (the BraTS 2020 winner's rule against false-positive ET
            in cases without enhancement); 0 disables.
    """

    min_component_ml: float = 0.0
    et_to_ncr_below_ml: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentConfig:
    """Options of a segment run."""

    device: str = "auto"
    tta: bool = False
    save_probabilities: bool = False
    #: Uncertainty score at/above which a slice is flagged (None: the validated default,
    #: :data:`gliomaseg.segment.uncertainty.DEFAULT_THRESHOLD`).
    flag_threshold: float | None = None
    labels: str = "input"
    batch_size: int = 32
    margin: int = 2
    #: Compute in float32 even where bf16 is native. By default the network runs under bf16
    #: autocast on CUDA and on CPUs with native bf16 (AVX-512 BF16 or AMX; 1.4x faster here),
    #: float32 elsewhere (emulated bf16 is slower). Cross-validated on the 49 BraTS patients:
    #: per-patient Dice within 0.006 of float32, means within 0.0002 (README, Speed).
    fp32: bool = False
    overwrite: bool = False
    #: None: the model's own recommendation (tuned in cross-validation, stored when bundled),
    #: else no postprocessing.
    postprocess: PostprocessConfig | None = None
