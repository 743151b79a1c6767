"""Review flags: the few axial slices a reader should check first, and a confidence per case.

Everything comes from what inference produces anyway (no extra forward pass). Per axial
slice ``z`` of the canonical grid, with ``p`` the tumour probability, ``m`` the final tumour
mask (after decoding and postprocessing) and ``s`` = :data:`SMOOTH_MM2` in pixels:

* ``boundary`` = sum |m - p| / (sum p + sum m + s), with p below :data:`P_FLOOR` taken as
  0: the fraction of the slice's tumour that would be wrong if the probabilities were
  calibrated, i.e. one minus the Dice the model expects of itself. Only voxels with p between 0 and 1 contribute, so this is the
  probability mass near the predicted boundary (and in doubtful blobs), relative to the
  tumour's size in that slice; a slice with no tumour and p ~ 0 scores ~ 0.
* ``disagreement`` (when there are at least two variants: the members of a fold ensemble,
  :class:`gliomaseg.models.ensemble.MeanEnsemble`, and/or the four flips of test-time augmentation):
  the mean over variants of |m_v xor m_mean| / (|m_mean| + |m_v| + s), i.e. one minus each
  variant's (smoothed) Dice with the consensus mask, on the network's grid.
* ``edge``: 1 on the first and last slice of the predicted tumour (partial-volume slices,
  where a small disagreement is a large fraction of the area), else 0.

The slice ``score`` is the larger of ``boundary`` and ``disagreement`` (``boundary`` alone
without variants) plus :data:`EDGE_WEIGHT` times ``edge``, clipped to [0, 1]; the
``reason`` is the component that contributes most (and says when the slice is a tumour end). Flags are the slices whose score is at
least the threshold (the model's own, stored by ``gliomaseg bundle --flag-threshold`` after
``bench/flags.py`` chose it on its cross-validation predictions, else :data:`DEFAULT_THRESHOLD`),
highest first, at most :data:`MAX_FLAGS` of them. The case
``confidence`` is one minus the same ratios taken over the whole volume (the larger of the
two when both exist): 1 when every voxel is certain and all variants agree.

Empty input: a case with no predicted tumour and confident background has no flags and
confidence near 1.

In ``<case>_summary.json`` (written by :mod:`gliomaseg.segment.workflow`):

* ``review.flags``: ranked list, most uncertain first, of ``{"slice": name, "index": i,
  "score": s, "reason": words}``; ``index`` is the slice's index along the input file's own
  array axis ``review.input_axis`` (:func:`source_slice_index`: the mapping the mask is
  written back with), ``slice`` the name used in ``slices`` (the file stem for TIFF stacks);
* ``review.confidence`` (0-1), ``review.threshold`` and ``review.threshold_source``
  (``--flag-threshold``, ``model`` or ``default``; added by
  :func:`gliomaseg.segment.summary.review_fields`), ``review.max_flags``,
  ``review.components`` (the signals available: ``disagreement`` needs an ensemble or
  ``--tta``), ``review.variants`` (members x flips);
* ``slices[*].uncertainty``: every slice's score; ``flagged_slices``: the flags' ``slice``
  names in rank order; ``flag_threshold``: the same as ``review.threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gliomaseg.core.targets import TargetSpec

if TYPE_CHECKING:
    import torch

    from gliomaseg.core.case import Case

#: Smoothing area (mm^2) added to every ratio's denominator: a slice whose tumour is much
#: smaller than a 5 x 5 mm cross-section is judged against this area, so a few doubtful
#: voxels in an otherwise empty slice do not score like a wholly wrong tumour.
SMOOTH_MM2 = 25.0
#: Probabilities below this count as 0: a background of p ~ 1e-4 summed over a 240 x 240
#: brain slice would otherwise weigh like a doubtful tumour. Kept low because a missed
#: tumour often shows only as p ~ 0.001-0.05 (``bench/flags.py`` reports the cost).
P_FLOOR = 0.001
#: Weight of the tumour's first and last slice in the score. 0: on the cross-validation
#: predictions it added nothing to ``boundary``, which already rises there
#: (``bench/flags.py`` compares 0, 0.1 and 0.25); the end slices are still named in the
#: flags' ``reason``.
EDGE_WEIGHT = 0.0
#: Score at or above which a slice is flagged (``bench/flags.py`` reports the validation).
DEFAULT_THRESHOLD = 0.3
#: Most slices flagged per case: a reader checks 5-15 slices, not the whole tumour.
MAX_FLAGS = 10

REASONS = {
    "boundary": "uncertain boundary",
    "disagreement": "models or flips disagree",
    "edge": "first or last tumour slice",
}


def tumour_channel(probs: torch.Tensor, target: TargetSpec) -> torch.Tensor:
    """(N, h, w) tumour probability of (N, K, h, w) network probabilities (any non-background).

    The same reduction as :func:`gliomaseg.segment.workflow.tumour_probability`, for batches.
    """
    if target.kind == "softmax":
        background = [k for k, g in enumerate(target.groups) if 0 in g]
        return 1.0 - probs[:, background].sum(dim=1)
    return probs.amax(dim=1)


def tumour_mask(logits: torch.Tensor, target: TargetSpec) -> torch.Tensor:
    """(N, h, w) bool: tumour probability >= 0.5, from (N, K, h, w) logits.

    For sigmoid outputs that is "some channel's logit >= 0", which needs no sigmoid (this
    runs once per ensemble member and flip, so it is kept cheap).
    """
    if target.kind == "softmax":
        import torch

        return tumour_channel(torch.softmax(logits.float(), dim=1), target) >= 0.5
    return logits.amax(dim=1) >= 0


@dataclass
class Disagreement:
    """Per-slice disagreement of the variants, fed batch by batch by ``predict_volume``.

    Pass it as ``observe=`` to :func:`gliomaseg.models.inference.predict_volume`. Counts are pixels
    of the network's grid (the slice scaled by ``input_scale``); the arrays grow to the
    number of slices predicted.

    Attributes:
        target: The network's outputs (which channels are tumour).
        z_start: Slice of the full grid where the predicted volume starts (the brain crop's
            first slice; 0 when the whole volume is predicted).
        variants: How many variants each batch had (0: nothing observed; 1: nothing to
            compare).
        xor: (Z',) mean over variants of |m_v xor m_mean| (pixels).
        area_mean: (Z',) |m_mean|, the consensus tumour area (pixels).
        area_variants: (Z',) mean over variants of |m_v| (pixels).
    """

    target: TargetSpec
    z_start: int = 0
    variants: int = 0
    xor: np.ndarray = field(default_factory=lambda: np.zeros(0))
    area_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    area_variants: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __call__(self, start: int, mean: torch.Tensor, variants: list[torch.Tensor]) -> None:
        """Record one batch: ``mean`` (N, K, h, w) probabilities, ``variants`` logits."""
        self.variants = len(variants)
        if len(variants) < 2:
            return
        consensus = tumour_channel(mean, self.target) >= 0.5
        stop = start + consensus.shape[0]
        if stop > self.xor.size:
            grow = stop - self.xor.size
            self.xor, self.area_mean, self.area_variants = (
                np.concatenate([a, np.zeros(grow)])
                for a in (self.xor, self.area_mean, self.area_variants)
            )
        xor = np.zeros(consensus.shape[0])
        area = np.zeros(consensus.shape[0])
        for logits in variants:
            own = tumour_mask(logits, self.target)
            xor += (own ^ consensus).sum(dim=(-2, -1)).cpu().numpy()
            area += own.sum(dim=(-2, -1)).cpu().numpy()
        self.xor[start:stop] = xor / len(variants)
        self.area_variants[start:stop] = area / len(variants)
        self.area_mean[start:stop] = consensus.sum(dim=(-2, -1)).cpu().numpy()


def _slice_sums(
    tumour_p: np.ndarray, mask: np.ndarray, floor: float = P_FLOOR
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice: sum p, sum m and sum |m - p| (p below ``floor`` as 0), each (Z,) float64.

    One pass over the volume: sum |m - p| = sum p + sum m - 2 sum p m for a 0/1 mask.
    """
    p = np.asarray(tumour_p, dtype=np.float32)
    if floor > 0:
        p = np.where(p < floor, np.float32(0.0), p)
    m = np.asarray(mask, dtype=bool)
    p_sum = p.sum(axis=(0, 1), dtype=np.float64)
    m_sum = np.count_nonzero(m, axis=(0, 1)).astype(np.float64)
    pm_sum = np.where(m, p, np.float32(0.0)).sum(axis=(0, 1), dtype=np.float64)
    return p_sum, m_sum, np.maximum(p_sum + m_sum - 2.0 * pm_sum, 0.0)


def components(
    tumour_p: np.ndarray,
    mask: np.ndarray,
    *,
    pixel_mm2: float,
    disagreement: Disagreement | None = None,
    input_scale: float = 1.0,
    floor: float = P_FLOOR,
    sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per-slice uncertainty components (see the module docstring).

    Args:
        tumour_p: (X, Y, Z) tumour probability in [0, 1].
        mask: (X, Y, Z) final tumour mask (bool), on the same grid.
        pixel_mm2: In-plane area of one voxel of that grid (mm^2).
        disagreement: Variant statistics of the predicted slices (None or one variant: the
            component is left out).
        input_scale: In-plane factor of the network's grid relative to ``tumour_p``'s.
        floor: Probabilities below it count as 0 (:data:`P_FLOOR`).
        sums: The per-slice sums of ``tumour_p`` and ``mask`` if already computed (they
            take one pass over the volume; :func:`review` shares them).

    Returns:
        ``boundary``, ``edge`` and (when measurable) ``disagreement``, each (Z,) float64 in
        [0, 1]; empty slices with confident background score 0.
    """
    p_sum, m_sum, wrong = sums if sums is not None else _slice_sums(tumour_p, mask, floor)
    smooth = SMOOTH_MM2 / pixel_mm2
    out = {"boundary": wrong / (p_sum + m_sum + smooth)}
    edge = np.zeros(p_sum.size)
    present = np.flatnonzero(m_sum > 0)
    if present.size:
        edge[[present[0], present[-1]]] = 1.0
    out["edge"] = edge
    if disagreement is not None and disagreement.variants > 1:
        d = disagreement
        net_smooth = smooth * input_scale**2
        values = np.zeros(p_sum.size)
        z0 = d.z_start
        values[z0 : z0 + d.xor.size] = d.xor / (d.area_mean + d.area_variants + net_smooth)
        out["disagreement"] = values
    return out


def slice_scores(
    parts: dict[str, np.ndarray], *, combine: str = "max", edge_weight: float | None = None
) -> tuple[np.ndarray, list[str]]:
    """(Z,) score in [0, 1] and the name of the largest contribution of each slice.

    Args:
        parts: Output of :func:`components`.
        combine: ``"max"`` (the shipped rule: a slice is as uncertain as its most uncertain
            signal) or ``"mean"`` of ``boundary`` and ``disagreement`` (``bench/flags.py``
            compares both).
        edge_weight: Added for the tumour's first and last slice (default
            :data:`EDGE_WEIGHT`).
    """
    weight = EDGE_WEIGHT if edge_weight is None else edge_weight
    signals = {k: parts[k] for k in ("boundary", "disagreement") if k in parts}
    stacked = np.stack(list(signals.values()))
    base = stacked.max(axis=0) if combine == "max" else stacked.mean(axis=0)
    contributions: dict[str, np.ndarray] = {
        k: v if combine == "max" else v / len(signals) for k, v in signals.items()
    }
    contributions["edge"] = weight * parts["edge"]
    score = np.clip(base + contributions["edge"], 0.0, 1.0)
    names = list(contributions)
    largest = np.stack([contributions[k] for k in names]).argmax(axis=0)
    return score, [names[int(i)] for i in largest]


def case_confidence(
    tumour_p: np.ndarray,
    mask: np.ndarray,
    *,
    pixel_mm2: float,
    disagreement: Disagreement | None = None,
    input_scale: float = 1.0,
    sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> float:
    """One minus the volume-level ``boundary`` (and ``disagreement``) ratio, in [0, 1].

    Arguments as in :func:`components`.
    """
    per_slice = sums if sums is not None else _slice_sums(tumour_p, mask)
    p_sum, m_sum, wrong = (float(a.sum()) for a in per_slice)
    smooth = SMOOTH_MM2 / pixel_mm2
    ratios = [wrong / (p_sum + m_sum + smooth)]
    if disagreement is not None and disagreement.variants > 1:
        d = disagreement
        denominator = d.area_mean.sum() + d.area_variants.sum() + smooth * input_scale**2
        ratios.append(float(d.xor.sum() / denominator))
    return float(np.clip(1.0 - max(ratios), 0.0, 1.0))


def rank_flags(
    score: np.ndarray,
    reasons: list[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_flags: int = MAX_FLAGS,
) -> list[int]:
    """Slices to review, most uncertain first: score >= ``threshold``, at most ``max_flags``.

    Ties keep slice order (a stable sort), so the list is deterministic.
    """
    del reasons  # the ranking uses the score only; reasons travel with the result
    order = np.argsort(-np.asarray(score), kind="stable")
    return [int(z) for z in order[:max_flags] if score[z] >= threshold]


def _reason(largest: str, *, edge: bool) -> str:
    """The largest contribution in words, noting a tumour end slice as well."""
    if edge and largest != "edge":
        return f"{REASONS[largest]}; {REASONS['edge']}"
    return REASONS[largest]


def source_slice_index(case: Case) -> tuple[int, np.ndarray]:
    """Where each canonical axial slice lies in the input file's own array.

    Uses :meth:`Case.to_source` (the mapping ``segment`` writes the mask with), so a slice
    number here is the index along the input array's axis that holds it.

    Returns:
        The input array's axis (0-2) holding the canonical Z axis, and (Z,) int64 where
        entry z is the input index of canonical slice z.
    """
    z = case.shape[2]
    probe = case.to_source(np.arange(z, dtype=np.int64).reshape(1, 1, z))
    axis = next((a for a, n in enumerate(probe.shape) if n == z and z > 1), 2)
    order = probe.reshape(-1)  # order[i] = canonical slice at input index i
    index = np.empty(z, dtype=np.int64)
    index[order] = np.arange(z)
    return axis, index


def review(
    tumour_p: np.ndarray,
    mask: np.ndarray,
    *,
    pixel_mm2: float,
    names: list[str],
    input_index: np.ndarray,
    input_axis: int,
    disagreement: Disagreement | None = None,
    input_scale: float = 1.0,
    threshold: float | None = None,
    max_flags: int = MAX_FLAGS,
) -> dict[str, Any]:
    """The ``review`` block of ``summary.json`` plus per-slice scores.

    Returns:
        ``{"review": {...}, "scores": (Z,) array}``; ``review`` holds ``flags`` (ranked list
        of ``{"slice", "index", "score", "reason"}``), ``confidence``, ``threshold``,
        ``max_flags``, ``components`` (which were available) and ``input_axis``.
    """
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    sums = _slice_sums(tumour_p, mask)
    parts = components(
        tumour_p,
        mask,
        pixel_mm2=pixel_mm2,
        disagreement=disagreement,
        input_scale=input_scale,
        sums=sums,
    )
    score, reasons = slice_scores(parts)
    flags = rank_flags(score, reasons, threshold=threshold, max_flags=max_flags)
    confidence = case_confidence(
        tumour_p,
        mask,
        pixel_mm2=pixel_mm2,
        disagreement=disagreement,
        input_scale=input_scale,
        sums=sums,
    )
    variants = disagreement.variants if disagreement is not None else 1
    return {
        "review": {
            "flags": [
                _flag(names[z], int(input_index[z]), score[z], reasons[z], edge=parts["edge"][z])
                for z in flags
            ],
            "confidence": round(confidence, 4),
            "threshold": threshold,
            "max_flags": max_flags,
            "components": sorted(parts),
            "variants": variants,
            "input_axis": input_axis,
        },
        "scores": score,
    }


def _flag(name: str, index: int, score: float, largest: str, *, edge: bool) -> dict[str, Any]:
    """One entry of ``review.flags``: the slice, its index in the input, score and reason."""
    return {
        "slice": name,
        "index": index,
        "score": round(float(score), 4),
        "reason": _reason(largest, edge=bool(edge)),
    }
