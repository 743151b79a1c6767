"""Review flags: uncertain slices rank first, confident empty slices are never flagged, the
list is bounded, slice numbers are the input file's, and the variants' disagreement is
measured without changing the prediction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from gliomaseg.core.case import Case
from gliomaseg.core.targets import TARGETS
from gliomaseg.models.ensemble import MeanEnsemble
from gliomaseg.models.inference import predict_volume
from gliomaseg.segment.uncertainty import (
    MAX_FLAGS,
    Disagreement,
    case_confidence,
    components,
    rank_flags,
    review,
    slice_scores,
    source_slice_index,
)

REGIONS = TARGETS["regions"]


def _disc(shape: tuple[int, int], radius: float) -> np.ndarray:
    xx, yy = np.mgrid[: shape[0], : shape[1]]
    return (xx - shape[0] / 2) ** 2 + (yy - shape[1] / 2) ** 2 <= radius**2


def _volume(z: int = 8, shape: tuple[int, int] = (32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Confident background (p = 1e-4) everywhere; slices 2-5 hold a confident disc (0.99)."""
    p = np.full((*shape, z), 1e-4, dtype=np.float32)
    disc = _disc(shape, 8)
    for k in range(2, 6):
        p[disc, k] = 0.99
    return p, p >= 0.5


def _observe(
    n_slices: int, disagree: dict[int, list[int]], shape: tuple[int, int] = (32, 32)
) -> Disagreement:
    """A Disagreement fed with 3 variants (their logits, as ``predict_volume`` passes them);
    ``disagree`` maps a slice to the variants that predict no tumour there (the others
    predict the consensus)."""
    d = Disagreement(REGIONS)
    mean = torch.zeros(n_slices, 3, *shape)
    disc = torch.from_numpy(_disc(shape, 8))
    mean[2:6, 0][:, disc] = 0.99
    logits = torch.where(mean > 0.5, 5.0, -5.0)
    variants = [logits.clone() for _ in range(3)]
    for z, which in disagree.items():
        for v in which:
            variants[v][z, 0] = -5.0
    d(0, mean, variants)
    return d


def test_the_slice_where_members_disagree_ranks_first() -> None:
    p, m = _volume()
    d = _observe(8, {4: [1, 2]})  # two of three members see no tumour
    parts = components(p, m, pixel_mm2=1.0, disagreement=d)
    assert set(parts) == {"boundary", "disagreement", "edge"}
    # the other slices all agree: no disagreement at all there
    assert parts["disagreement"][3] == 0.0 and parts["disagreement"][4] > 0.4
    for combine in ("max", "mean"):
        score, reasons = slice_scores(parts, combine=combine, edge_weight=0.0)
        assert rank_flags(score, reasons, threshold=0.0, max_flags=3)[0] == 4
        assert reasons[4] == "disagreement"
    score, reasons = slice_scores(parts)  # the shipped rule, edges weighted
    assert rank_flags(score, reasons, threshold=0.0, max_flags=3)[0] == 4


def test_confident_empty_slices_are_not_flagged_and_confidence_is_high() -> None:
    p, m = _volume()
    result = review(
        p,
        m,
        pixel_mm2=1.0,
        names=[str(z) for z in range(8)],
        input_index=np.arange(8),
        input_axis=2,
        disagreement=_observe(8, {}),
    )
    flagged = {f["index"] for f in result["review"]["flags"]}
    assert not flagged & {0, 1, 6, 7}  # empty, confident
    assert result["review"]["confidence"] > 0.95
    assert result["scores"][[0, 1, 6, 7]].max() < 0.01
    # an empty volume (nothing predicted, confident background): no flags at all
    empty = review(
        np.full_like(p, 1e-4),
        np.zeros_like(m),
        pixel_mm2=1.0,
        names=[str(z) for z in range(8)],
        input_index=np.arange(8),
        input_axis=2,
    )
    assert empty["review"]["flags"] == [] and empty["review"]["confidence"] > 0.95
    assert empty["review"]["components"] == ["boundary", "edge"]


def test_doubtful_slices_score_higher_than_confident_ones() -> None:
    p, m = _volume()
    p[:, :, 3][_disc((32, 32), 10) & ~_disc((32, 32), 6)] = 0.5  # a blurred boundary
    parts = components(p, m, pixel_mm2=1.0)
    assert parts["boundary"][3] > 5 * parts["boundary"][2]
    assert case_confidence(p, m, pixel_mm2=1.0) < case_confidence(*_volume(), pixel_mm2=1.0)


def test_the_flag_list_is_bounded_and_ranked() -> None:
    z = 60
    p = np.full((16, 16, z), 0.5, dtype=np.float32)  # every slice maximally doubtful
    p[..., 7] = 0.45  # a little less doubtful
    score, reasons = slice_scores(components(p, p >= 0.5, pixel_mm2=1.0))
    flags = rank_flags(score, reasons)
    assert len(flags) == MAX_FLAGS
    assert all(score[a] >= score[b] for a, b in itertools.pairwise(flags))
    assert rank_flags(score, reasons, max_flags=3) == flags[:3]


def test_slice_numbers_follow_the_input_files_axis() -> None:
    # input stored superior-to-inferior (z flipped) with the slice axis first
    affine = np.array(
        [[0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]]
    )
    from gliomaseg.core.geometry import to_canonical

    source = np.zeros((5, 6, 7), dtype=np.uint8)  # (slice, y, x) in the file
    source[1] = 1  # file slice 1 marked
    canon, canon_affine = to_canonical(source, affine)
    case = Case(
        case_id="c",
        image=canon[None].astype(np.float32),
        modalities=("flair",),
        label=None,
        affine=canon_affine,
        scheme=None,
        layout="test",
        source_affine=affine,
        source_shape=source.shape,
    )
    axis, index = source_slice_index(case)
    assert axis == 0
    marked = int(np.flatnonzero(canon.any(axis=(0, 1)))[0])
    assert index[marked] == 1
    assert sorted(index.tolist()) == list(range(5))


class _Const(torch.nn.Module):
    def __init__(self, bias: float) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 3, 3, padding=1)
        torch.nn.init.constant_(self.conv.weight, 0.0)
        torch.nn.init.constant_(self.conv.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x[:, :1] * 4.0


def test_observing_variants_leaves_the_prediction_unchanged() -> None:
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(6, 4, 17, 19)).astype(np.float32)
    model = MeanEnsemble([_Const(-1.0), _Const(0.0), _Const(1.0)])
    plain = predict_volume(model, volume, target=REGIONS, multiple=4, tta=True, batch_size=4)
    d = Disagreement(REGIONS)
    seen = predict_volume(
        model, volume, target=REGIONS, multiple=4, tta=True, batch_size=4, observe=d
    )
    np.testing.assert_array_equal(plain, seen)
    assert d.variants == 3 * 4 and d.xor.shape == (6,)
    assert d.xor.max() > 0  # the members' biases differ, so their masks do


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_tumour_channel_matches_segment(kind: str) -> None:
    from gliomaseg.segment.summary import tumour_probability
    from gliomaseg.segment.uncertainty import tumour_channel

    target = TARGETS["classes4"] if kind == "softmax" else REGIONS
    probs = torch.rand(2, target.channels, 5, 6)
    if kind == "softmax":
        probs = probs / probs.sum(dim=1, keepdim=True)
    ours = tumour_channel(probs, target).numpy()
    theirs = tumour_probability(np.moveaxis(probs.numpy(), 0, 1), target)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
