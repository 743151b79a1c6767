"""The ``<case>_summary.json`` content: volumes, geometry, per-slice probabilities, review flags."""

from __future__ import annotations

from typing import Any

import numpy as np

from gliomaseg import __version__
from gliomaseg.core.case import Case
from gliomaseg.core.targets import TargetSpec
from gliomaseg.segment.config import SegmentConfig
from gliomaseg.segment.models import Segmenter, flag_threshold
from gliomaseg.segment.postprocess import COORDINATES, region_volumes, tumour_geometry
from gliomaseg.segment.uncertainty import Disagreement, review, source_slice_index
from gliomaseg.train.bundle import model_training_cases, training_case_record


def tumour_probability(probs: np.ndarray, target: TargetSpec) -> np.ndarray:
    """(X, Y, Z) probability that a voxel is tumour (any non-background output)."""
    if target.kind == "softmax":
        background = [k for k, g in enumerate(target.groups) if 0 in g]
        return 1.0 - probs[background].sum(axis=0)
    return probs.max(axis=0)


def summarise(
    case: Case,
    label: np.ndarray,
    probs: np.ndarray,
    seg: Segmenter,
    config: SegmentConfig,
    record: dict[str, Any],
    *,
    disagreement: Disagreement | None = None,
) -> dict[str, Any]:
    """The ``<case>_summary.json`` content."""
    tumour_p = tumour_probability(probs, seg.target)
    per_slice = tumour_p.reshape(-1, tumour_p.shape[-1]).max(axis=0)
    names = list(case.slice_names) or [str(z) for z in range(per_slice.size)]
    flags = review_fields(case, tumour_p, label, seg, config, names, disagreement)
    binary = bool(case.scheme.binary) if case.scheme else seg.target.channels == 1
    return {
        "case_id": case.case_id,
        "gliomaseg_version": __version__,
        "layout": case.layout,
        "inputs": dict(case.source),
        "model": seg.source,
        "modalities": list(seg.modalities),
        "outputs": list(seg.target.names),
        "spacing_mm": [round(s, 6) for s in case.spacing],
        "spacing_known": case.spacing_known,
        "input_notes": case.input_notes,
        "voxel_volume_ml": case.voxel_volume_ml,
        "volumes_ml": region_volumes(label, case.voxel_volume_ml, binary=binary),
        **tumour_geometry(
            label,
            case.affine,
            brain=case.brain_mask,
            to_input=case.source_indices,
            image=case.image,
            orientation_known=case.orientation_known,
        ),
        "coordinates": COORDINATES,
        "postprocessing": record,
        "training_case": training_case_record(
            model_training_cases(seg.source, seg.meta), case.case_id, case.meta.get("patient", "")
        ),
        "tta": config.tta,
        "precision": "bf16" if seg.bf16(config) else "fp32",
        "flag_threshold": flags["review"]["threshold"],
        "slices": [
            {
                "slice": n,
                "index": z,
                "input_index": int(flags["input_index"][z]),
                "max_tumour_probability": round(float(p), 4),
                "uncertainty": round(float(u), 4),
            }
            for z, (n, p, u) in enumerate(zip(names, per_slice, flags["scores"], strict=True))
        ],
        "review": flags["review"],
        "flagged_slices": [f["slice"] for f in flags["review"]["flags"]],
    }


def review_fields(
    case: Case,
    tumour_p: np.ndarray,
    label: np.ndarray,
    seg: Segmenter,
    config: SegmentConfig,
    names: list[str],
    disagreement: Disagreement | None,
) -> dict[str, Any]:
    """Review flags and case confidence (:func:`gliomaseg.segment.uncertainty.review`), plus
    ``input_index``: each canonical slice's index along the input's ``review.input_axis``."""
    axis, index = source_slice_index(case)
    sx, sy, _ = case.spacing
    threshold, source = flag_threshold(seg, config)
    out = review(
        tumour_p,
        label > 0,
        pixel_mm2=sx * sy,
        names=names,
        input_index=index,
        input_axis=axis,
        disagreement=disagreement,
        input_scale=seg.input_scale,
        threshold=threshold,
    )
    out["review"]["threshold_source"] = source
    out["input_index"] = index
    return out
