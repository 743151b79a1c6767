"""Options of a ``segment`` run."""

from __future__ import annotations

from dataclasses import dataclass

from gliomaseg.segment.postprocess import PostprocessConfig


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
    amp: bool = False
    overwrite: bool = False
    #: None: the model's own recommendation (tuned in cross-validation, stored when bundled),
    #: else no postprocessing.
    postprocess: PostprocessConfig | None = None
