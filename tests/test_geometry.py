from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.core.geometry import (
    bounding_box,
    check_same_grid,
    check_spacing,
    from_canonical,
    orientation_code,
    to_canonical,
    voxel_to_world,
)


def _affine(spacing=(1.0, 1.0, 2.0), flips=(-1, 1, 1), perm=(0, 1, 2)):
    a = np.zeros((4, 4))
    for i, (ax, s, f) in enumerate(zip(perm, spacing, flips, strict=True)):
        a[ax, i] = s * f
    a[:3, 3] = (10.0, -20.0, 5.0)
    a[3, 3] = 1
    return a


@pytest.mark.parametrize(
    ("flips", "perm"),
    [
        ((1, 1, 1), (0, 1, 2)),
        ((-1, -1, 1), (0, 1, 2)),
        ((-1, 1, -1), (1, 0, 2)),
        ((1, -1, 1), (2, 0, 1)),
    ],
)
def test_canonical_round_trip_is_exact_and_keeps_scanner_coordinates(flips, perm, rng):
    affine = _affine(flips=flips, perm=perm)
    data = rng.random((2, 5, 6, 7)).astype(np.float32)
    canon, canon_affine = to_canonical(data, affine)
    assert orientation_code(canon_affine) == "RAS"
    np.testing.assert_array_equal(from_canonical(canon, affine), data)
    # The voxel that held a value keeps its scanner position.
    idx = (3, 4, 5)
    world = affine @ np.array([*idx, 1.0])
    canon_idx = np.rint(np.linalg.inv(canon_affine) @ world)[:3].astype(int)
    assert canon[(0, *canon_idx)] == data[(0, *idx)]


def test_spacing_follows_axes_after_permutation():
    affine = _affine(spacing=(1.0, 2.0, 3.0), perm=(2, 0, 1))
    data = np.zeros((4, 5, 6))
    canon, canon_affine = to_canonical(data, affine)
    norms = np.sqrt((canon_affine[:3, :3] ** 2).sum(axis=0))
    assert canon.shape == (5, 6, 4)
    np.testing.assert_allclose(norms, (2.0, 3.0, 1.0))


def test_check_same_grid_names_the_offending_file():
    a = _affine()
    check_same_grid([("a.nii.gz", (4, 4, 4), a), ("b.nii.gz", (4, 4, 4), a.copy())])
    with pytest.raises(ValueError, match=r"b\.nii\.gz: shape"):
        check_same_grid([("a.nii.gz", (4, 4, 4), a), ("b.nii.gz", (4, 4, 5), a)])
    shifted = a.copy()
    shifted[0, 3] += 1.5
    with pytest.raises(ValueError, match=r"c\.nii\.gz: affine differs"):
        check_same_grid([("a.nii.gz", (4, 4, 4), a), ("c.nii.gz", (4, 4, 4), shifted)])


def test_bounding_box_with_margin_is_clipped():
    mask = np.zeros((33, 34, 35), bool)
    mask[1, 10, 30] = True
    mask[4, 12, 34] = True
    assert bounding_box(mask) == (slice(1, 5), slice(10, 13), slice(30, 35))
    assert bounding_box(mask, margin=3) == (slice(0, 8), slice(7, 16), slice(27, 35))
    assert bounding_box(mask, axes=(0, 1)) == (slice(1, 5), slice(10, 13), slice(0, 35))
    assert bounding_box(mask[:, :, 30]) == (slice(1, 2), slice(10, 11))


def test_bounding_box_empty_mask_is_none():
    assert bounding_box(np.zeros((33, 34, 35), bool)) is None


@pytest.mark.parametrize("margin", [-1, 1.5, True])
def test_bounding_box_rejects_bad_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        bounding_box(np.ones((3, 4, 5), bool), margin=margin)


def test_voxel_to_world_applies_the_affine():
    affine = _affine(flips=(-1, 1, 1), perm=(1, 0, 2))
    points = np.array([[0, 0, 0], [2, 3, 4]])
    expected = np.array([affine @ np.append(p, 1.0) for p in points])[:, :3]
    np.testing.assert_allclose(voxel_to_world(points, affine), expected)
    np.testing.assert_allclose(voxel_to_world(points[1], affine), expected[1])


def test_check_spacing_broadcasts_and_validates():
    np.testing.assert_array_equal(check_spacing(2), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(check_spacing((1, 1, 2.5)), [1.0, 1.0, 2.5])
    np.testing.assert_array_equal(check_spacing([0.5, 0.7], ndim=2), [0.5, 0.7])
    assert check_spacing((1, 2, 3)).dtype == np.float64
    for bad in [(1, 1), (1, 0, 1), (1, -1, 1), (1, np.nan, 1), (1, np.inf, 1), "x", (1, 1, 1, 1)]:
        with pytest.raises(ValueError, match=r"spacing .* positive voxel sizes in mm"):
            check_spacing(bad)
