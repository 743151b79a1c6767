"""``gliomaseg inspect``: what a case is, in numbers (layout, grid, labels, volumes in mL)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gliomaseg.core.case import Case
from gliomaseg.core.geometry import CANONICAL, orientation_code
from gliomaseg.core.labels import INTERNAL_NAMES, region_counts
from gliomaseg.io.caseref import CaseRef


def label_volumes(
    label: np.ndarray,
    *,
    voxel_ml: float,
    regions: dict[str, tuple[int, ...]],
    binary_name: str | None = None,
) -> dict[str, Any]:
    """Voxel counts and volumes (mL) per internal label and per region.

    Args:
        label: (X, Y, Z) internal codes.
        voxel_ml: Volume of one voxel in mL.
        regions: Region name -> internal codes (see :data:`gliomaseg.core.labels.REGIONS`).
        binary_name: For a binary scheme, the name of its one label (LGG: "FLAIR
            abnormality"), counted instead of the BraTS labels 1-3.

    Returns:
        ``{"voxels": {name: n}, "volume_ml": {name: mL}}`` for labels 1-3 and each region;
        an empty label map gives zeros, never an error.
    """
    if binary_name is not None:  # one label: no NCR/NET, ED, ET to count
        n = int(np.count_nonzero(label))
        voxels = {binary_name: n, **{region: n for region in regions}}
    else:
        voxels = region_counts(label, regions)
    return {"voxels": voxels, "volume_ml": {k: round(v * voxel_ml, 4) for k, v in voxels.items()}}


def describe(case: Case, ref: CaseRef | None = None) -> dict[str, Any]:
    """JSON-ready description of a case (what ``inspect --json`` prints for it)."""
    out: dict[str, Any] = {
        "case_id": case.case_id,
        "path": str(ref.path) if ref else case.source.get("folder", ""),
        "layout": case.layout,
        "patient": case.meta.get("patient", case.case_id),
        "modalities": list(case.modalities),
        "shape": list(case.source_shape or case.shape),
        "canonical_shape": list(case.shape),
        "spacing_mm": [round(s, 6) for s in case.spacing],
        "spacing_known": case.spacing_known,
        "orientation": orientation_code(
            case.source_affine if case.source_affine is not None else case.affine
        ),
        "canonical_orientation": CANONICAL,
        "orientation_known": case.orientation_known,
        "orientation_source": case.meta.get("orientation", ""),
        "voxel_volume_ml": case.voxel_volume_ml,
        "files": case.source,
        "label_scheme": case.scheme.name if case.scheme else None,
        "warnings": [],
    }
    if case.image is not None:
        out["intensity"] = {
            m: _intensity_stats(case.image[i]) for i, m in enumerate(case.modalities)
        }
    if case.label is not None and case.scheme is not None:
        raw_counts = np.bincount(case.label.ravel(), minlength=4)
        out["label_counts"] = {
            f"{case.scheme.from_internal[k]} ({case.scheme.names.get(case.scheme.from_internal[k], INTERNAL_NAMES[k])})": int(
                raw_counts[k]
            )
            for k in sorted(case.scheme.from_internal)
            if k < raw_counts.size
        }
        binary_name = None
        if case.scheme.binary:
            value = case.scheme.from_internal[max(case.scheme.from_internal)]
            binary_name = case.scheme.names.get(value, "tumour")
        out.update(
            label_volumes(
                case.label,
                voxel_ml=case.voxel_volume_ml,
                regions=case.scheme.regions,
                binary_name=binary_name,
            )
        )
    if not case.spacing_known:
        out["warnings"].append("voxel size not stored in this format: volumes assume 1 mm voxels")
    if not case.orientation_known:
        out["warnings"].append(f"orientation {case.meta.get('orientation', 'unknown')}")
    out["warnings"] += [f"{key}: {note}" for key, note in case.input_notes.items()]
    if case.slice_names:
        out["slices"] = list(case.slice_names)
    return out


def _intensity_stats(channel: np.ndarray) -> dict[str, float]:
    nz = channel[channel != 0]
    return {
        "min": float(channel.min()),
        "max": float(channel.max()),
        "nonzero_fraction": round(float(nz.size / channel.size), 6),
        "mean_nonzero": float(nz.mean()) if nz.size else 0.0,
    }
