"""The output contract: the name of everything gliomaseg writes, in one place.

Writers (segment, explain, evaluate, report, train, prepare, bundle) and readers (report,
explain, evaluate, demo) build names only from here, so a rename happens once. Pure names, no
I/O. Input naming (how we recognise the files users give us) is :mod:`gliomaseg.io.naming`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------- segment
#: ``<case>_seg.nii.gz``: the mask in the input's geometry and label scheme.
SEG_SUFFIX = "_seg.nii.gz"
#: ``<case>_probs.nii.gz``: per-channel probabilities (``segment --probabilities``).
PROBS_SUFFIX = "_probs.nii.gz"
#: ``<case>_summary.json``: volumes, regions, review flags, provenance.
SUMMARY_SUFFIX = "_summary.json"
#: Stem endings that mark a label file of a case (``<case>_seg``; ``<case>-seg`` from others).
SEG_STEM_SUFFIXES: tuple[str, ...] = ("_seg", "-seg")
#: Stem endings of files ``segment`` writes beside a mask that are not masks.
NON_MASK_STEM_SUFFIXES: tuple[str, ...] = ("_probs",)

# --------------------------------------------------------------------------- explain
FEATURES_STEM = "_features"  # .json and .csv
SLICE_FEATURES_SUFFIX = "_slice_features.csv"
MESH_STL_SUFFIX = "_mesh.stl"
MESH_PNG_SUFFIX = "_mesh.png"
EXPLANATION_SUFFIX = "_explanation.json"

# --------------------------------------------------------------------------- evaluate, report
PER_CASE_CSV = "per_case.csv"
PER_SLICE_CSV = "per_slice.csv"
EVALUATION_SUMMARY = "summary.json"
REPORT_SUFFIX = "_report.html"
COHORT_REPORT = "cohort.html"
TRAINING_REPORT = "training.html"

# --------------------------------------------------------------------------- runs and caches
RUN_CONFIG = "config.json"
RUN_METRICS = "metrics.csv"
RUN_CURVES = "curves.png"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CACHE_INDEX = "index.json"
CACHE_CASES = "cases"


@dataclass(frozen=True)
class SegmentOutputs:
    """Paths ``segment`` writes for one case."""

    seg: Path
    summary: Path
    probs: Path

    def written(self, *, probabilities: bool) -> list[Path]:
        """The files written, probabilities first when asked (the order ``segment`` writes)."""
        return [*([self.probs] if probabilities else []), self.seg, self.summary]


def segment_outputs(case_id: str, out_dir: str | Path) -> SegmentOutputs:
    """Where ``segment`` puts the outputs of ``case_id`` in ``out_dir``."""
    root = Path(out_dir)
    return SegmentOutputs(
        seg=root / f"{case_id}{SEG_SUFFIX}",
        summary=root / f"{case_id}{SUMMARY_SUFFIX}",
        probs=root / f"{case_id}{PROBS_SUFFIX}",
    )


@dataclass(frozen=True)
class ExplainOutputs:
    """Paths ``explain`` writes for one case."""

    features_json: Path
    features_csv: Path
    slice_features: Path
    mesh_stl: Path
    mesh_png: Path
    explanation: Path


def explain_outputs(case_id: str, out_dir: str | Path) -> ExplainOutputs:
    """Where ``explain`` puts the outputs of ``case_id`` in ``out_dir``."""
    root = Path(out_dir)
    return ExplainOutputs(
        features_json=root / f"{case_id}{FEATURES_STEM}.json",
        features_csv=root / f"{case_id}{FEATURES_STEM}.csv",
        slice_features=root / f"{case_id}{SLICE_FEATURES_SUFFIX}",
        mesh_stl=root / f"{case_id}{MESH_STL_SUFFIX}",
        mesh_png=root / f"{case_id}{MESH_PNG_SUFFIX}",
        explanation=root / f"{case_id}{EXPLANATION_SUFFIX}",
    )


def case_report_path(case_id: str, out_dir: str | Path) -> Path:
    """``<out_dir>/<case>_report.html``: the case report's default name."""
    return Path(out_dir) / f"{case_id}{REPORT_SUFFIX}"


def strip_seg_suffix(stem: str) -> str:
    """Case id of a label file stem: ``BraTS2021_00000_seg`` -> ``BraTS2021_00000``
    (the suffix matched in any case: ``_SEG`` too)."""
    for suffix in SEG_STEM_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def run_checkpoint(run_dir: str | Path, which: str = "last") -> Path:
    """``<run>/checkpoints/{last,best}.pt``."""
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    name = LAST_CHECKPOINT if which == "last" else BEST_CHECKPOINT
    return Path(run_dir) / CHECKPOINT_DIR / name
