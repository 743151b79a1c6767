from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.core.geometry import check_same_grid, from_canonical, orientation_code, to_canonical


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
