"""The output contract (io/outputs.py) and the canonical geometry helpers (core/geometry.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gliomaseg.core.geometry import bounding_box, voxel_to_world
from gliomaseg.io import outputs


def test_segment_outputs_names_and_order(tmp_path: Path) -> None:
    out = outputs.segment_outputs("BraTS2021_00000", tmp_path)
    assert out.seg == tmp_path / "BraTS2021_00000_seg.nii.gz"
    assert out.summary.name == "BraTS2021_00000_summary.json"
    assert [p.name for p in out.written(probabilities=True)] == [
        "BraTS2021_00000_probs.nii.gz",
        "BraTS2021_00000_seg.nii.gz",
        "BraTS2021_00000_summary.json",
    ]
    assert len(out.written(probabilities=False)) == 2


@pytest.mark.parametrize(
    ("stem", "case_id"),
    [("a_seg", "a"), ("a-seg", "a"), ("a_SEG", "a"), ("_seg", "_seg"), ("a", "a")],
)
def test_strip_seg_suffix(stem: str, case_id: str) -> None:
    assert outputs.strip_seg_suffix(stem) == case_id


def test_run_checkpoint_names(tmp_path: Path) -> None:
    assert outputs.run_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.pt"
    assert outputs.run_checkpoint(tmp_path, "best").name == "best.pt"
    with pytest.raises(ValueError, match="last"):
        outputs.run_checkpoint(tmp_path, "first")


def test_bounding_box_margin_axes_and_empty() -> None:
    mask = np.zeros((5, 6, 7), dtype=bool)
    mask[1:3, 2, 4:6] = True
    assert bounding_box(mask) == (slice(1, 3), slice(2, 3), slice(4, 6))
    assert bounding_box(mask, margin=2) == (slice(0, 5), slice(0, 5), slice(2, 7))
    assert bounding_box(mask, axes=(0, 1)) == (slice(1, 3), slice(2, 3), slice(0, 7))
    assert bounding_box(np.zeros((3, 4))) is None
    with pytest.raises(ValueError, match="margin"):
        bounding_box(mask, margin=-1)


def test_voxel_to_world_applies_rotation_and_offset() -> None:
    affine = np.array([[-1.0, 0, 0, 10], [0, 2, 0, -5], [0, 0, 3, 1], [0, 0, 0, 1]])
    world = voxel_to_world(np.array([[1, 1, 1], [0, 0, 0]]), affine)
    np.testing.assert_allclose(world, [[9, -3, 4], [10, -5, 1]])
