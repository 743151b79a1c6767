"""Tests for gliomaseg.train.losses on tiny hand-checkable tensors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from gliomaseg.train.loss_targets import channel_targets, onehot_targets, region_targets
from gliomaseg.train.losses import LOSS_NAMES, LossConfig, build_loss


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors run faster on one thread, and one thread does not stall (OpenMP
    spin-waits) when other test processes share the CPU; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SOFTMAX_NAMES = ("ce", "dice", "dice_ce", "dice_focal")
SIGMOID_NAMES = ("bce", "dice_bce", "bce_iou")

# 2x2 map holding every internal code once: [[bg, NCR], [ED, ET]].
LABELS = torch.tensor([[[0, 1], [2, 3]]])


def _class_map(seed: int = 0, shape: tuple[int, ...] = (2, 6, 7), classes: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, shape, generator=generator)
    labels.view(shape[0], -1)[:, :classes] = torch.arange(classes)  # every class in every sample
    return labels


def _confident(onehot: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Logits whose softmax/sigmoid is (almost exactly) the given 0/1 channels."""
    return scale * (2 * onehot - 1)


@pytest.mark.parametrize("name", ["dice", "dice_ce", "dice_focal"])
def test_softmax_dice_perfect_and_all_wrong(name: str) -> None:
    labels = _class_map()
    loss = build_loss({"name": name, "lambda_ce": 0.0, "lambda_focal": 0.0})
    perfect = loss(_confident(onehot_targets(labels)), labels)
    wrong = loss(_confident(onehot_targets((labels + 1) % 4)), labels)
    assert perfect.item() == pytest.approx(0.0, abs=1e-4)
    assert wrong.item() == pytest.approx(1.0, abs=1e-4)


def test_sigmoid_dice_bce_perfect_and_all_wrong() -> None:
    regions = region_targets(_class_map())
    loss = build_loss({"name": "dice_bce", "lambda_ce": 0.0})
    assert loss(_confident(regions), regions).item() == pytest.approx(0.0, abs=1e-4)
    assert loss(_confident(1 - regions), regions).item() == pytest.approx(1.0, abs=1e-4)
    bce = build_loss({"name": "bce"})
    assert bce(_confident(regions), regions).item() < 1e-6
    assert bce(_confident(1 - regions), regions).item() == pytest.approx(20.0, rel=1e-3)


def test_bce_iou_matches_manual_formula() -> None:
    logits = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]]])  # (1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    p = torch.sigmoid(logits)
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    intersection = (p * target).sum()
    union = p.sum() + target.sum() - intersection
    iou_loss = 1 - intersection / union
    for lambda_ce, lambda_iou in [(1.0, 1.0), (0.5, 2.0)]:
        loss = build_loss({"name": "bce_iou", "lambda_ce": lambda_ce, "lambda_iou": lambda_iou})
        expected = lambda_ce * bce + lambda_iou * iou_loss
        assert loss(logits, target).item() == pytest.approx(expected.item(), abs=1e-5)
    # K=1 targets may come without the channel axis.
    assert loss(logits, target[:, 0]).item() == pytest.approx(loss(logits, target).item())


def test_ce_class_weights() -> None:
    labels = _class_map()
    logits = torch.randn(2, 4, 6, 7, generator=torch.Generator().manual_seed(1))
    plain = build_loss({"name": "ce"})(logits, labels)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    weights = (0.1, 5.0, 1.0, 1.0)
    weighted = build_loss({"name": "ce", "class_weights": weights})(logits, labels)
    manual = F.cross_entropy(logits, labels, weight=torch.tensor(weights))
    assert weighted.item() == pytest.approx(manual.item(), rel=1e-6)
    assert abs(weighted.item() - plain.item()) > 1e-3


def test_dice_ce_matches_monai_and_target_forms_agree() -> None:
    from monai.losses import DiceCELoss

    labels = _class_map()
    logits = torch.randn(2, 4, 6, 7, generator=torch.Generator().manual_seed(2))
    config = LossConfig(name="dice_ce", include_background=False, batch_dice=False)
    ours = build_loss(config)(logits, labels)
    monai = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    assert ours.item() == pytest.approx(monai(logits, labels[:, None]).item(), rel=1e-5)
    assert build_loss(config)(logits, labels[:, None]).item() == pytest.approx(ours.item())


def test_dice_bce_on_overlapping_regions_uses_bce() -> None:
    from monai.losses import DiceLoss

    regions = region_targets(_class_map())
    logits = torch.randn(regions.shape, generator=torch.Generator().manual_seed(3))
    ours = build_loss({"name": "dice_bce", "batch_dice": False})(logits, regions)
    dice = DiceLoss(sigmoid=True)(logits, regions)
    expected = dice + F.binary_cross_entropy_with_logits(logits, regions)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_dice_focal_softmax_and_sigmoid() -> None:
    labels = _class_map()
    logits = torch.randn(2, 4, 6, 7, generator=torch.Generator().manual_seed(4))
    # gamma 0 turns the softmax focal term into cross-entropy (MONAI averages over channels).
    focal = build_loss({"name": "dice_focal", "gamma": 0.0, "lambda_dice": 0.0})
    assert focal.config.activation == "softmax"
    ce = F.cross_entropy(logits, labels)
    assert focal(logits, labels).item() == pytest.approx(ce.item() / 4, rel=1e-5)
    sigmoid = build_loss({"name": "dice_focal", "sigmoid": True})
    assert sigmoid.config.activation == "sigmoid"
    regions = region_targets(labels)
    assert torch.isfinite(sigmoid(logits[:, :3], regions))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradients_flow_2d_and_3d(name: str) -> None:
    sigmoid = name in SIGMOID_NAMES
    for shape in [(2, 6, 7), (1, 3, 4, 5)]:
        labels = _class_map(shape=shape)
        target = region_targets(labels) if sigmoid else labels
        channels = 3 if sigmoid else 4
        logits = torch.randn(shape[0], channels, *shape[1:], requires_grad=True)
        loss = build_loss({"name": name})(logits, target)
        assert loss.ndim == 0
        loss.backward()
        assert logits.grad is not None
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
def test_softmax_weights_without_background(name: str) -> None:
    labels = _class_map()
    logits = torch.randn(2, 4, 6, 7, generator=torch.Generator().manual_seed(5))
    plain = build_loss({"name": name, "include_background": False})(logits, labels)
    weighted = build_loss(
        {"name": name, "include_background": False, "class_weights": [0.5, 1.0, 2.0, 4.0]}
    )(logits, labels)
    assert torch.isfinite(weighted) and weighted.item() != pytest.approx(plain.item())


def test_region_channel_and_onehot_targets() -> None:
    wt, tc, et = region_targets(LABELS)[0]
    assert wt.tolist() == [[0, 1], [1, 1]]
    assert tc.tolist() == [[0, 1], [0, 1]]
    assert et.tolist() == [[0, 0], [0, 1]]
    assert torch.equal(region_targets(LABELS[:, None]), region_targets(LABELS))
    assert region_targets(LABELS, ("ET", "WT")).shape == (1, 2, 2, 2)
    ncr, ed, et2 = channel_targets(LABELS)[0]
    assert (ncr.tolist(), ed.tolist(), et2.tolist()) == (
        [[0, 1], [0, 0]],
        [[0, 0], [1, 0]],
        [[0, 0], [0, 1]],
    )
    onehot = onehot_targets(LABELS.to(torch.uint8))
    assert onehot.shape == (1, 4, 2, 2) and onehot.dtype == torch.float32
    assert torch.equal(onehot.argmax(1), LABELS)
    empty = torch.zeros(1, 3, 4, 5, dtype=torch.long)  # 3D, no tumour
    assert region_targets(empty).shape == (1, 3, 3, 4, 5) and region_targets(empty).sum() == 0
    with pytest.raises(ValueError, match="unknown region"):
        region_targets(LABELS, ("WT", "XX"))
    with pytest.raises(ValueError, match="integer tensor"):
        region_targets(LABELS.float())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        onehot_targets(LABELS, num_classes=3)


@pytest.mark.parametrize(
    ("name", "logits_shape", "target", "match"),
    [
        ("dice_ce", (1, 4, 2, 2), region_targets(LABELS), "use a sigmoid loss"),
        ("ce", (1, 3, 2, 2), LABELS, r"classes must lie in \[0, 2\]"),
        ("dice_bce", (1, 3, 2, 2), LABELS[:, None].float(), "region_targets"),
        ("bce", (1, 1, 2, 2), LABELS.float(), r"must lie in \[0, 1\]"),
        ("dice", (1, 1, 2, 2), LABELS.clamp(max=1), "need >= 2 logit channels"),
    ],
)
def test_bad_targets_are_actionable(
    name: str, logits_shape: tuple[int, ...], target: torch.Tensor, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build_loss({"name": name})(torch.zeros(logits_shape), target)


def test_class_weights_length_checked() -> None:
    loss = build_loss({"name": "dice_ce", "class_weights": [1, 2, 3]})
    with pytest.raises(ValueError, match="class_weights has 3 entries but the logits have 4"):
        loss(torch.zeros(1, 4, 2, 2), LABELS)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_config_round_trip(name: str) -> None:
    extra: dict[str, Any] = {"class_weights": [1.0, 2.0, 2.0], "smooth": 1.0}
    if name in SOFTMAX_NAMES:
        extra["include_background"] = False
    config = LossConfig.from_dict({"name": name, **extra})
    data = json.loads(json.dumps(config.to_dict()))
    assert data["sigmoid"] is (name in SIGMOID_NAMES)  # resolved, so saved configs are explicit
    assert LossConfig.from_dict(data) == config
    assert build_loss(data).config == config


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "tversky"}, "loss name must be one of"),
        ({"name": "ce", "sigmoid": True}, "softmax only"),
        ({"name": "bce", "sigmoid": False}, "sigmoid only"),
        ({"name": "dice_bce", "include_background": False}, "keep include_background=True"),
        ({"smooth": 0}, "smooth must be > 0"),
        ({"class_weights": [1, -1]}, "non-negative"),
        ({"lambda_ce": -1}, "lambda_ce must be >= 0"),
        ({"lambda_ce": 0, "lambda_dice": 0}, "every term"),
        ({"class_weights": 2.0}, "one weight per channel"),
        ({"batch_dice": "yes"}, "batch_dice must be true or false"),
        ({"weight": [1, 2]}, r"unknown loss config key\(s\) \['weight'\]"),
    ],
)
def test_invalid_config(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LossConfig.from_dict(data)


def test_import_does_not_load_monai() -> None:
    code = "import sys, gliomaseg.train.losses; assert 'monai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
