"""Everything we report is in the input file's coordinates (issue 15, item 5).

Voxel positions (``bbox_voxels``, ``centroid_voxel``) index the input file's array as stored,
mm positions (``centroid_mm``) are scanner RAS+ from the input's affine, and meshes are in
scanner RAS+ mm with ``SPACE=RAS`` in their header, so they overlay the image in 3D Slicer
(which reads that tag) and ITK-SNAP (whose world is the NIfTI RAS world).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.cli.main import main
from gliomaseg.core.geometry import to_canonical, to_source_indices
from gliomaseg.explain import summary as summary_module
from gliomaseg.explain import workflow as explain
from gliomaseg.explain.mesh import reconstruct, reconstruct_case, stl_bytes, write_mesh
from gliomaseg.io.layouts import read_case
from gliomaseg.io.writers import write_layout
from gliomaseg.synthetic.phantoms import SyntheticCase, make_case
from test_explain import HashEmbedder


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Summaries use the hash embedder (explain's sentences are not under test here)."""
    monkeypatch.setattr(summary_module, "default_embedder", HashEmbedder)


def _rotation_z(degrees: float, shift: tuple[float, float, float]) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:3, 3] = shift
    return out


def _stored_otherwise(
    synth: SyntheticCase,
    *,
    perm: tuple[int, int, int] = (2, 0, 1),
    flips: tuple[int, ...] = (2,),
    degrees: float = 12.0,
    shift: tuple[float, float, float] = (35.0, -20.0, 50.0),
) -> SyntheticCase:
    """The same case stored with permuted and flipped axes and an oblique, shifted affine.

    New axis k is old axis ``perm[k]`` (reversed when k is in ``flips``); the affine is
    composed with that index map, so each voxel keeps its place in the scanner, then the
    whole scan is turned ``degrees`` about z and moved by ``shift`` mm (a new session).
    """

    def move(array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, perm)
        for axis in flips:
            out = np.flip(out, axis)
        return np.ascontiguousarray(out)

    new_shape = [synth.shape[p] for p in perm]
    index_map = np.zeros((4, 4))
    index_map[3, 3] = 1.0
    for k, p in enumerate(perm):
        index_map[p, k] = -1.0 if k in flips else 1.0
        index_map[p, 3] = new_shape[k] - 1 if k in flips else 0.0
    affine = _rotation_z(degrees, shift) @ synth.affine @ index_map
    return replace(
        synth,
        images={k: move(v) for k, v in synth.images.items()},
        label=move(synth.label),
        affine=affine,
    )


@pytest.fixture(scope="module")
def oblique_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom stored (z, x, y)-first with a flipped axis, 2 x 1 x 1 mm voxels, oblique."""
    synth = make_case(
        rng=np.random.default_rng(31),
        case_id="Case_778",
        template="phantom",
        shape=(32, 32, 20),
        tumour_radius_mm=8.0,
        spacing=(1.0, 1.0, 2.0),
        flip_axis=0,
    )
    stored = _stored_otherwise(synth)
    return write_layout(stored, tmp_path_factory.mktemp("oblique") / "in", layout="brats2020")


def _read_stl(path: Path) -> tuple[bytes, np.ndarray]:
    """Header and (3 * n_triangles, 3) vertices of a binary STL."""
    data = path.read_bytes()
    (count,) = struct.unpack("<I", data[80:84])
    record = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    tris = np.frombuffer(data[84 : 84 + 50 * count], dtype=record)
    return data[:80], tris["v"].reshape(-1, 3).astype(np.float64)


def _as_viewer_loads(path: Path) -> np.ndarray:
    """Vertices in RAS as 3D Slicer loads an STL: RAS if the header says SPACE=RAS, else LPS."""
    header, vertices = _read_stl(path)
    if b"SPACE=RAS" in header:
        return vertices
    return vertices * np.array([-1.0, -1.0, 1.0])  # Slicer's default for untagged files: LPS


def _world_bounds(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scanner bounds of the mask's voxel centres, widened by one voxel's footprint."""
    idx = np.argwhere(mask).astype(np.float64)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    voxel = np.abs(affine[:3, :3]).sum(axis=1)  # a voxel's extent along x, y, z
    return world.min(axis=0) - voxel, world.max(axis=0) + voxel


# --------------------------------------------------------------------------- unit


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([-1.0, -1.0, 1.0, 1.0]),  # BraTS LPS
        np.array([[0, 0, -2.0, 90], [1.5, 0, 0, -40], [0, -1, 0, 30], [0, 0, 0, 1]]),
        _rotation_z(20.0, (5.0, 6.0, 7.0)) @ np.diag([1.0, -1.2, 3.0, 1.0]),
    ],
)
def test_source_indices_invert_the_canonical_reorientation(affine: np.ndarray) -> None:
    shape = (7, 9, 5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        marked = tuple(int(rng.integers(0, n)) for n in shape)
        array = np.zeros(shape, dtype=np.uint8)
        array[marked] = 1
        canon, canon_affine = to_canonical(array, affine)
        where = np.argwhere(canon)[0]
        back = to_source_indices(where[None], affine, shape)[0]
        np.testing.assert_allclose(back, marked, atol=1e-9)
        # ... and both name the same scanner point
        np.testing.assert_allclose(
            canon_affine @ np.append(where, 1.0), affine @ np.append(back, 1.0), atol=1e-9
        )


def test_mesh_is_in_scanner_coordinates_and_says_so(oblique_case: Path, tmp_path: Path) -> None:
    case = read_case(oblique_case)
    assert case.label is not None
    mesh = reconstruct_case(case)
    assert mesh.space == "RAS" and "RAS" in mesh.stats()["coordinates"]
    lo, hi = _world_bounds(case.label > 0, case.affine)
    assert np.all(mesh.vertices.min(axis=0) >= lo) and np.all(mesh.vertices.max(axis=0) <= hi)
    assert b"SPACE=RAS" in stl_bytes(mesh)[:80]
    ply = write_mesh(mesh, tmp_path / "m.ply").read_text()
    assert "comment gliomaseg tumour surface, scanner mm SPACE=RAS" in ply.splitlines()
    # The mesh of the voxel grid alone (no affine) is not tagged as scanner coordinates.
    plain = reconstruct(case.label > 0, spacing=case.spacing)
    assert plain.space == "array" and b"SPACE" not in stl_bytes(plain)[:80]
    with pytest.raises(ValueError, match="exactly one of spacing"):
        reconstruct(case.label > 0, spacing=case.spacing, affine=case.affine)


@pytest.mark.parametrize("mirror", [False, True])
def test_mesh_normals_point_outwards_whatever_the_affine(mirror: bool) -> None:
    ball = np.linalg.norm(np.indices((15, 15, 15)) - 7.0, axis=0) <= 5.0
    affine = np.diag([-1.0 if mirror else 1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-40.0, 12.0, 3.0)
    mesh = reconstruct(ball, affine=affine)
    tri = mesh.vertices[mesh.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = np.einsum("ij,ij->i", normals, tri.mean(axis=1) - mesh.vertices.mean(axis=0))
    assert np.mean(outward > 0) > 0.99
    assert mesh.mesh_volume_ml == pytest.approx(reconstruct(ball, spacing=(1, 1, 2)).mesh_volume_ml)


# --------------------------------------------------------------------------- segment + explain


@pytest.fixture
def model_path(tiny_run: Path) -> Path:
    """The small region model trained on synthetic phantoms (tests/conftest.py)."""
    return tiny_run / "checkpoints" / "best.pt"


def test_segment_and_explain_report_positions_in_the_input_files_frame(
    oblique_case: Path, model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["segment", str(oblique_case), "-o", str(out), "--model", str(model_path)]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads((out / "Case_778_summary.json").read_text())
    seg = nib.load(out / "Case_778_seg.nii.gz")
    pred = np.asarray(seg.dataobj) > 0
    truth = np.asarray(nib.load(next(oblique_case.glob("*_seg.nii.gz"))).dataobj) > 0
    assert pred.any() and truth.any()

    # Read back from the written mask: exact.
    idx = np.argwhere(pred)
    box = summary["bbox_voxels"]
    assert box["start"] == idx.min(axis=0).tolist() and box["stop"] == (idx.max(0) + 1).tolist()
    np.testing.assert_allclose(summary["centroid_voxel"], idx.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(
        summary["centroid_mm"], (seg.affine @ np.append(idx.mean(axis=0), 1.0))[:3], atol=0.02
    )
    assert "input file" in summary["coordinates"]["bbox_voxels"]

    # Against the input's own label: the predicted tumour sits where the true one is (the
    # model's Dice on these phantoms is 0.89-0.96, test_segment.py), while the canonical
    # grid's indices of the true tumour (what summaries reported before) miss it, so this
    # test tells the two apart.
    true_centre = np.argwhere(truth).mean(axis=0)
    np.testing.assert_allclose(summary["centroid_voxel"], true_centre, atol=3.0)
    assert truth[tuple(np.rint(summary["centroid_voxel"]).astype(int))]
    case = read_case(oblique_case)
    assert case.label is not None
    canonical_centre = np.argwhere(case.label > 0).mean(axis=0)
    assert not truth[tuple(np.rint(canonical_centre).astype(int))]

    # explain on the written segmentation: same convention, and a mesh that overlays the mask.
    assert explain.run(explain_args(out / "Case_778_seg.nii.gz", tmp_path / "x")) == 0
    feats = json.loads((tmp_path / "x" / "Case_778_features.json").read_text())["features"]
    np.testing.assert_allclose(feats["centroid_voxel"], summary["centroid_voxel"], atol=0.01)
    np.testing.assert_allclose(feats["centroid_mm"], summary["centroid_mm"], atol=0.01)
    vertices = _as_viewer_loads(tmp_path / "x" / "Case_778_mesh.stl")
    lo, hi = _world_bounds(pred, seg.affine)
    assert np.all(vertices.min(axis=0) >= lo) and np.all(vertices.max(axis=0) <= hi)
    # ... and reaches its far ends (not a shrunken or shifted copy inside the box)
    voxel = np.abs(seg.affine[:3, :3]).sum(axis=1)
    assert np.all(np.abs(vertices.min(axis=0) - lo) <= voxel)
    assert np.all(np.abs(vertices.max(axis=0) - hi) <= voxel)


def explain_args(seg: Path, out: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    explain.add_arguments(parser)
    return parser.parse_args([str(seg), "-o", str(out)])


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_brats_case_positions_and_mesh_overlay_the_input(
    shared_data: Path, tmp_path: Path
) -> None:
    from gliomaseg.segment.models import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "brats.pt").exists():
        pytest.skip(f"no bundled 'brats' model in {WEIGHTS_DIR}")
    case_dir = shared_data / "brats" / "BraTS2021_00000"
    out = tmp_path / "out"
    argv = ["segment", str(case_dir), "-o", str(out), "--model", "brats", "--device", "cpu"]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads((out / "BraTS2021_00000_summary.json").read_text())
    seg = nib.load(out / "BraTS2021_00000_seg.nii.gz")
    pred = np.asarray(seg.dataobj) > 0
    idx = np.argwhere(pred)
    box = summary["bbox_voxels"]
    assert box["start"] == idx.min(axis=0).tolist() and box["stop"] == (idx.max(0) + 1).tolist()
    label_file = nib.load(case_dir / "BraTS2021_00000_seg.nii.gz")
    truth = np.argwhere(np.asarray(label_file.dataobj) > 0)
    # This patient is a training case (WT Dice ~0.96): the centroid lands within a few
    # voxels of the manual label's, in the file's own indices (the canonical grid's were ~80
    # voxels away in x and y: BraTS files are stored LPS).
    np.testing.assert_allclose(summary["centroid_voxel"], truth.mean(axis=0), atol=5.0)
    assert summary["training_case"]["used_to_train_model"] is True

    assert explain.run(explain_args(out / "BraTS2021_00000_seg.nii.gz", tmp_path / "x")) == 0
    vertices = _as_viewer_loads(tmp_path / "x" / "BraTS2021_00000_mesh.stl")
    lo, hi = _world_bounds(pred, seg.affine)
    assert np.all(vertices.min(axis=0) >= lo) and np.all(vertices.max(axis=0) <= hi)
    # The mesh also overlays the manual label in the scanner frame (loose: 10 mm).
    t_lo, t_hi = _world_bounds(np.asarray(label_file.dataobj) > 0, label_file.affine)
    np.testing.assert_allclose(vertices.min(axis=0), t_lo, atol=10.0)
    np.testing.assert_allclose(vertices.max(axis=0), t_hi, atol=10.0)
