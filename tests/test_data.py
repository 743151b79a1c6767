"""Targets, augmentation, datasets and the epoch sampler."""

from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.core.targets import TARGETS, TargetSpec
from gliomaseg.models.inference import slice_with_context
from gliomaseg.train.augment import AugmentConfig, augment, copy_modalities
from gliomaseg.train.datasets import EpochSampler, fit_to


def test_region_targets_and_decoding_round_trip():
    label = np.array([[0, 1], [2, 3]])
    regions = TARGETS["regions"]
    t = regions.encode(label)
    np.testing.assert_array_equal(t[0], [[0, 1], [1, 1]])  # WT
    np.testing.assert_array_equal(t[1], [[0, 1], [0, 1]])  # TC
    np.testing.assert_array_equal(t[2], [[0, 0], [0, 1]])  # ET
    np.testing.assert_array_equal(regions.decode(t * 0.9 + 0.05), label)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_decodes_its_own_encoding(name):
    spec = TARGETS[name]
    label = np.array([0, 1, 2, 3])
    encoded = spec.encode(label)
    probs = np.eye(spec.channels)[encoded].T if spec.kind == "softmax" else encoded
    decoded = spec.decode(probs.astype(np.float32))
    expected = {"classes3-bg-ed-et": [0, 0, 2, 3], "binary": [0, 1, 1, 1]}.get(name, [0, 1, 2, 3])
    np.testing.assert_array_equal(decoded, expected)


def test_softmax_groups_must_cover_every_code():
    with pytest.raises(ValueError, match="exactly once"):
        TargetSpec("softmax", ((0,), (1,)), ("a", "b"))


def test_fit_to_pads_and_crops():
    a = np.arange(2 * 5 * 7).reshape(2, 5, 7)
    out = fit_to(a, (8, 4))
    assert out.shape == (2, 8, 4)
    assert out[:, 0].sum() == 0  # padded rows are zeros
    np.testing.assert_array_equal(fit_to(a, (5, 7)), a)


def test_slice_with_context_repeats_edges_and_selects_channels():
    vol = np.arange(3 * 2 * 2 * 2, dtype=np.float32).reshape(3, 2, 2, 2)
    out = slice_with_context(vol, 0, 1, channels=[1])
    assert out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out[0], vol[0, 1])
    np.testing.assert_array_equal(out[2], vol[1, 1])


def test_spatial_augmentation_moves_image_and_label_together(rng):
    label = np.zeros((32, 32), np.uint8)
    label[5:12, 8:20] = 3
    image = np.stack([label * 2.0, label * -1.0]).astype(np.float32)
    config = AugmentConfig(flip=0.5, rotate_deg=20, rotate_p=1.0, elastic=1.0)
    for seed in range(5):
        img, lab = augment(image, label, config, np.random.default_rng(seed))
        assert set(np.unique(lab)) <= {0, 3}  # nearest neighbour: no blended codes
        inside = lab == 3
        assert img[0][inside].mean() > 4.0 and img[0][~inside].mean() < 1.0
    same = [augment(image, label, config, np.random.default_rng(9))[0] for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])


def test_intensity_augmentation_leaves_background_and_label(rng):
    image = rng.normal(size=(2, 16, 16)).astype(np.float32)
    image[:, :4] = 0
    label = np.ones((16, 16), np.uint8)
    config = AugmentConfig(noise_std=0.1, brightness=0.2, contrast=0.2, gamma=0.3, intensity_p=1.0)
    img, lab = augment(image, label, config, rng)
    assert np.all(img[:, :4] == 0)
    np.testing.assert_array_equal(lab, label)
    assert not np.allclose(img, image)


def test_sampler_is_deterministic_oversamples_and_resumes_mid_epoch():
    has = [i % 10 == 0 for i in range(100)]
    s = EpochSampler(has, length=50, seed=3, tumour_fraction=0.6)
    s.set_epoch(2)
    keys = list(s)
    assert keys == list(EpochSampler(has, length=50, seed=3, tumour_fraction=0.6).keys(2))
    assert sum(has[p] for p, _ in keys) >= 30
    s.set_epoch(2, skip=7)
    assert list(s) == keys[7:]
    s.set_epoch(3)
    assert list(s) != keys


def test_sampler_splits_one_sequence_across_ranks():
    has = [True] * 20
    ranks = [EpochSampler(has, length=8, seed=0, rank=r, world_size=2) for r in (0, 1)]
    full = ranks[0].keys(0)
    assert list(ranks[0]) == full[0::2] and list(ranks[1]) == full[1::2]


def test_copy_modalities_replaces_whole_modalities_across_context_slices():
    # 3 modalities x 3 context slices, slice-major: channel = slice * 3 + modality.
    image = np.arange(9, dtype=np.float32)[:, None, None] * np.ones((9, 4, 5), np.float32)
    copied = copy_modalities(image, modalities=3, source=1, p=1.0, rng=np.random.default_rng(0))
    assert copied.shape == image.shape and copied is not image
    for s in range(3):
        for m in range(3):
            assert np.all(copied[s * 3 + m] == image[s * 3 + 1])  # every modality is the source's
    assert np.all(image == np.arange(9)[:, None, None])  # the input is left as it was
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert copy_modalities(image, modalities=3, source=1, p=0.0, rng=rng) is image
    assert rng.bit_generator.state == state  # off: no draws, so older runs resume exactly
    # p = 0.5 over many draws: each other modality is replaced about half the time, alone.
    rng = np.random.default_rng(1)
    hits = np.zeros(3)
    for _ in range(400):
        out = copy_modalities(image, modalities=3, source=1, p=0.5, rng=rng)
        hits += [np.all(out[m] == image[1]) for m in range(3)]
    assert hits[1] == 400 and 150 < hits[0] < 250 and 150 < hits[2] < 250


def test_slice_dataset_copies_the_missing_source_into_the_other_modalities(synthetic_cache):
    from gliomaseg.train.datasets import PreparedCases, SliceDataset

    cases = PreparedCases(synthetic_cache, ["Synth_000"])
    names = list(cases.index["modalities"])
    ref = max(cases.slices(), key=lambda s: s.tumour_pixels)
    kwargs = {"target": TARGETS["regions"], "size": (32, 32), "context": 1}
    always = AugmentConfig(missing=1.0, missing_source="t1ce")
    sample = SliceDataset(cases, [ref], augment_config=always, **kwargs)[(0, 7)]["image"].numpy()
    source = names.index("t1ce")
    for c in range(sample.shape[0]):
        assert np.array_equal(sample[c], sample[c - c % len(names) + source])
    plain = SliceDataset(cases, [ref], **kwargs)[(0, 7)]["image"].numpy()
    assert not np.array_equal(plain[0], plain[source])
    with pytest.raises(ValueError, match="not one of the model's modalities"):
        SliceDataset(cases, [ref], augment_config=always, channels=[0, 1], **kwargs)


@pytest.mark.parametrize(
    ("preset", "missing", "message"),
    [("lgg-cpu-128", 1.5, "must be in"), ("brats-regions-3d", 0.2, "2D models only")],
)
def test_missing_augmentation_is_checked_in_the_config(preset, missing, message):
    from gliomaseg.train.config import TrainConfig, load_config

    data = load_config(preset).to_dict()
    data["augment"]["missing"] = missing
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(data)
