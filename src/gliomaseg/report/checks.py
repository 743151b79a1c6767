"""The checks of a case report: each returns the warning lines it finds (thresholds below)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.core.case import MODALITIES
from gliomaseg.core.labels import REGIONS
from gliomaseg.evaluate.metrics import BINARY_REGIONS, region_metrics
from gliomaseg.report.case_data import CaseFiles, CaseVolumes
from gliomaseg.report.style import MODALITY_TITLES

#: Mean, over slices with predicted tumour, of the per-slice maximum probability below which
#: the segmentation is flagged as low confidence.
LOW_CONFIDENCE_MEAN = 0.7
#: Highest per-slice maximum probability below which a whole case is low confidence.
LOW_PEAK_PROBABILITY = 0.9
#: A modality that is zero over more than this share of the brain (the union of the other
#: modalities' non-zero voxels) is flagged: cropped, misregistered or masked differently.
MIN_BRAIN_COVERAGE = 0.5
#: Share of brain voxels at the maximum value above which a modality looks clipped.
MAX_SATURATED_FRACTION = 0.05
#: A maximum above p99 + this many (p99 - p1) looks like spikes or a wrong scaling.
OUTLIER_RANGES = 10.0
#: p99 / p50 inside the brain above which the intensity histogram is far from an MR image's
#: (brain MR: about 1.2-4; a skull left in, a huge lesion or an ill-scaled export give more).
MAX_P99_OVER_MEDIAN = 20.0
#: Share of the predicted whole-tumour volume that postprocessing (removal of small
#: connected components) may take away before the report warns. Component removal is meant
#: to drop specks; when it takes a tenth or more of what the network predicted, the result
#: depends on the threshold and the removed regions deserve a look.
MAX_REMOVED_FRACTION = 0.10


def intensity_stats(images: dict[str, NDArray[np.floating]]) -> dict[str, dict[str, Any]]:
    """Per modality: brain percentiles and the numbers the intensity warnings use.

    The brain is the union of every modality's non-zero voxels (inputs are skull-stripped,
    zero outside the brain).

    Returns:
        Modality -> ``{"p1", "p50", "p99", "max", "coverage", "saturated", "nonfinite"}``;
        ``coverage`` is the share of brain voxels where the modality is non-zero,
        ``saturated`` the share of brain voxels equal to its maximum. Percentiles are None
        when the brain is empty.
    """
    if not images:
        return {}
    brain = np.zeros(next(iter(images.values())).shape, dtype=bool)
    for data in images.values():
        brain |= np.isfinite(data) & (data != 0)
    stats: dict[str, dict[str, Any]] = {}
    for name, data in images.items():
        values = data[brain]
        finite = values[np.isfinite(values)]
        entry: dict[str, Any] = {"nonfinite": int(values.size - finite.size), "coverage": None}
        if finite.size:
            p1, p50, p99 = (float(v) for v in np.percentile(finite, [1, 50, 99]))
            top = float(finite.max())
            entry.update(p1=p1, p50=p50, p99=p99, max=top)
            entry["coverage"] = float(np.count_nonzero(finite) / max(values.size, 1))
            entry["saturated"] = float(np.count_nonzero(finite == top) / finite.size)
        else:
            entry.update(p1=None, p50=None, p99=None, max=None, saturated=None)
        stats[name] = entry
    return stats


def intensity_warnings(stats: dict[str, dict[str, Any]]) -> list[str]:
    """One line per modality whose intensities look wrong (thresholds: module constants)."""
    out: list[str] = []
    for name, s in stats.items():
        title = MODALITY_TITLES.get(name, name)
        if s["nonfinite"]:
            out.append(f"unusual intensity: {title} has {s['nonfinite']} NaN/Inf brain voxel(s)")
        if s["p50"] is None:
            continue
        spread = s["p99"] - s["p1"]
        if spread <= 1e-6 * max(1.0, abs(s["p50"])):
            out.append(
                f"unusual intensity: {title} is constant inside the brain (about {s['p50']:.4g}):"
                " an empty or corrupt channel"
            )
            continue
        if s["coverage"] is not None and s["coverage"] < MIN_BRAIN_COVERAGE:
            out.append(
                f"unusual intensity: {title} is zero over {100 * (1 - s['coverage']):.0f}% of "
                "the brain the other modalities cover: cropped, misregistered or masked "
                "differently"
            )
        if s["saturated"] is not None and s["saturated"] > MAX_SATURATED_FRACTION:
            out.append(
                f"unusual intensity: {100 * s['saturated']:.0f}% of {title} brain voxels sit at "
                f"its maximum {s['max']:.4g}: clipped or saturated"
            )
        if s["max"] > s["p99"] + OUTLIER_RANGES * spread:
            out.append(
                f"unusual intensity: {title} has extreme values (max {s['max']:.4g}, 99th "
                f"percentile {s['p99']:.4g}): spikes or a wrong scaling"
            )
        if s["p50"] > 0 and s["p99"] / s["p50"] > MAX_P99_OVER_MEDIAN:
            out.append(
                f"unusual intensity: {title} 99th percentile is {s['p99'] / s['p50']:.0f}x its "
                "brain median: far from a skull-stripped MR image (skull left in? wrong file?)"
            )
    return out


def confidence_warnings(
    summary: dict[str, Any], prediction: NDArray[np.integer] | None
) -> list[str]:
    """Low-confidence lines from the summary's per-slice maximum probabilities."""
    slices = summary.get("slices") or []
    if not slices:
        return []
    probs = {int(s["index"]): float(s["max_tumour_probability"]) for s in slices}
    # the flag threshold of older summaries was on this maximum probability; ranked review
    # flags (``review``) threshold an uncertainty score instead, so use the old default here
    threshold = LOW_PEAK_PROBABILITY if "review" in summary else summary.get("flag_threshold")
    out: list[str] = []
    top = max(probs.values())
    if threshold is not None and top < float(threshold):
        out.append(
            f"low confidence: no slice reaches the flag threshold {float(threshold):g} "
            f"(highest maximum probability {top:.2f}); review the whole case"
        )
    if prediction is not None:
        rows = np.flatnonzero(prediction.any(axis=(0, 1)))
        tumour = [int(z) for z in rows if int(z) in probs]
    else:
        tumour = [z for z, p in probs.items() if p >= 0.5]
    if tumour:
        mean = float(np.mean([probs[z] for z in tumour]))
        if mean < LOW_CONFIDENCE_MEAN:
            out.append(
                f"low confidence: mean of the per-slice maximum probability over the "
                f"{len(tumour)} slice(s) with predicted tumour is {mean:.2f} "
                f"(below {LOW_CONFIDENCE_MEAN:g})"
            )
    return out


def postprocessing_warnings(summary: dict[str, Any]) -> list[str]:
    """A line when postprocessing removed a large share of the prediction.

    Reads the ``postprocessing`` record of ``<id>_summary.json``: ``removed_fraction`` (share
    of ``wt_before_ml``, the whole tumour the network predicted, that component removal took
    away) against :data:`MAX_REMOVED_FRACTION`. A record from before these fields existed
    only says how many components went, so removed components are then reported without a
    share.
    """
    record = summary.get("postprocessing")
    if not isinstance(record, dict) or not record.get("components_removed"):
        return []
    n = int(record["components_removed"])
    what = (
        f"{n} connected component{'s' if n != 1 else ''} under "
        f"{float(record.get('min_component_ml') or 0):g} mL"
    )
    fraction = record.get("removed_fraction")
    if fraction is None:
        return [
            f"postprocessing removed {what}; the summary does not record their volume (made "
            "by an older gliomaseg): re-run 'gliomaseg segment' to see their share"
        ]
    if float(fraction) < MAX_REMOVED_FRACTION:
        return []
    return [
        f"postprocessing removed {100 * float(fraction):.0f}% of the predicted whole tumour "
        f"({float(record.get('removed_ml') or 0):.1f} of "
        f"{float(record.get('wt_before_ml') or 0):.1f} mL; warning from "
        f"{100 * MAX_REMOVED_FRACTION:.0f}%): {what}; the network predicted tumour there, "
        "review the removed regions (--min-component-ml 0 keeps them)"
    ]


def reference_scores(volumes: CaseVolumes) -> dict[str, dict[str, float]] | None:
    """Dice, HD95 and volumes of the prediction against the ``--reference`` label map.

    :func:`gliomaseg.evaluate.metrics.region_metrics` per region (WT, TC, ET; ``tumour`` for binary
    predictions), at the case's voxel size, BraTS empty-mask policy.

    Returns:
        Region -> :data:`gliomaseg.evaluate.metrics.METRIC_NAMES` values, or ``None`` without both a
        prediction and a reference.
    """
    if volumes.prediction is None or volumes.reference is None:
        return None
    return region_metrics(
        volumes.prediction,
        volumes.reference,
        spacing=volumes.spacing,
        regions=BINARY_REGIONS if volumes.binary else REGIONS,
        labels=(),
    )


def case_warnings(files: CaseFiles, volumes: CaseVolumes) -> list[str]:
    """Every warning of a case report, most important first."""
    summary = files.summary
    out = training_case_warning(summary)
    out += confidence_warnings(summary, volumes.prediction)
    volumes_ml = summary.get("volumes_ml") or {}
    if volumes_ml and not any(float(v or 0) > 0 for v in volumes_ml.values()):
        out.append("no tumour segmented: every predicted volume is 0 mL")
    out += postprocessing_warnings(summary)
    inputs = summary.get("inputs") or {}
    # Only judge when the modalities are known (per-modality inputs, or images read from a
    # folder); an unreadable folder is already reported in the notes.
    known = {m for m in MODALITIES if m in inputs} | set(volumes.images)
    for name in MODALITIES if known else ():
        if name not in known:
            out.append(f"missing modality: {MODALITY_TITLES[name]} is not among the case's inputs")
    if summary.get("spacing_known") is False or not summary.get("spacing_mm"):
        out.append(
            "spacing unknown: the input files carry no voxel size; volumes (mL) and lengths "
            "(mm) assume the default spacing " + _spacing_text(summary.get("spacing_mm"))
        )
    out += intensity_warnings(intensity_stats(volumes.images))
    out += volumes.notes
    return out


def training_case_warning(summary: dict[str, Any]) -> list[str]:
    """One line when ``segment`` found the case among the model's training cases."""
    record = summary.get("training_case") or {}
    if record.get("used_to_train_model") is not True:
        return []
    return [f"training case ({record.get('matched')}): {record.get('note')}"]


def _spacing_text(spacing: Any) -> str:
    if not spacing:
        return "(not recorded)"
    return "(" + " x ".join(f"{float(s):g}" for s in spacing) + " mm)"
