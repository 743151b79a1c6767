"""Marching-cubes reconstruction at the true spacing, mesh files and the three-view PNG."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from gliomaseg.core.case import Case
from gliomaseg.core.labels import LGG
from gliomaseg.explain.mesh import Mesh, enclosed_volume, reconstruct, reconstruct_case
from gliomaseg.explain.mesh_files import render_views, write_mesh

RADIUS_MM = 10.0
SPACING = (1.0, 1.0, 2.0)


def _ball(radius_mm: float = RADIUS_MM, spacing: tuple[float, ...] = SPACING) -> np.ndarray:
    axes = [
        (np.arange(int(2.6 * radius_mm / s)) - int(2.6 * radius_mm / s) // 2) * s for s in spacing
    ]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x**2 + y**2 + z**2 <= radius_mm**2).astype(np.uint8)


@pytest.fixture(scope="module")
def ball_mesh() -> Mesh:
    return reconstruct(_ball(), spacing=SPACING)


def test_ball_volume_area_and_height(ball_mesh: Mesh) -> None:
    volume_ml = 4.0 / 3.0 * math.pi * RADIUS_MM**3 / 1000.0
    area_mm2 = 4.0 * math.pi * RADIUS_MM**2
    assert ball_mesh.mesh_volume_ml == pytest.approx(volume_ml, rel=0.05)
    assert ball_mesh.surface_area_mm2 == pytest.approx(area_mm2, rel=0.10)
    assert ball_mesh.voxel_volume_ml == pytest.approx(np.count_nonzero(_ball()) * 2.0 / 1000)
    # slices at z = -10, -8, ..., 10 mm hold the ball: 11 slices of 2 mm
    assert ball_mesh.n_slices == 11
    assert ball_mesh.height_mm == pytest.approx(22.0)
    extent = ball_mesh.vertices.max(axis=0) - ball_mesh.vertices.min(axis=0)
    assert extent == pytest.approx([2 * RADIUS_MM] * 3, abs=2.0)  # not squashed along z


def test_plain_binary_marching_cubes_and_empty_mask() -> None:
    plain = reconstruct(_ball(), spacing=SPACING, smooth_sigma=0.0)
    assert plain.mesh_volume_ml == pytest.approx(4.0 / 3.0 * math.pi, rel=0.05)
    empty = reconstruct(np.zeros((5, 5, 5)), spacing=(1, 1, 1))
    assert empty.empty and empty.mesh_volume_ml == 0.0 and empty.height_mm == 0.0
    with pytest.raises(ValueError, match="spacing"):
        reconstruct(_ball(), spacing=(1.0, 0.0, 1.0))


def test_divergence_volume_of_a_cube() -> None:
    cube = np.zeros((6, 6, 6), dtype=np.uint8)
    cube[1:5, 1:5, 1:5] = 1
    mesh = reconstruct(cube, spacing=(2.0, 2.0, 2.0), smooth_sigma=0.0)
    verts, faces = mesh.vertices, mesh.faces
    assert enclosed_volume(verts, faces) == pytest.approx(mesh.mesh_volume_ml * 1000)
    assert enclosed_volume(verts * 2.0, faces) == pytest.approx(8 * mesh.mesh_volume_ml * 1000)
    assert mesh.voxel_volume_ml == pytest.approx(64 * 8 / 1000)


def test_stl_is_binary_with_the_right_triangle_count(tmp_path: Path, ball_mesh: Mesh) -> None:
    path = write_mesh(ball_mesh, tmp_path / "tumour.stl")
    data = path.read_bytes()
    (count,) = struct.unpack("<I", data[80:84])
    assert count == len(ball_mesh.faces)
    assert len(data) == 84 + 50 * count
    first = np.frombuffer(data[84 : 84 + 48], dtype="<f4")
    assert np.linalg.norm(first[:3]) == pytest.approx(1.0, abs=1e-5)
    assert first[3:].reshape(3, 3) == pytest.approx(
        ball_mesh.vertices[ball_mesh.faces[0]], abs=1e-4
    )


def test_ply_header_and_counts(tmp_path: Path, ball_mesh: Mesh) -> None:
    path = write_mesh(ball_mesh, tmp_path / "tumour.ply")
    lines = path.read_text().splitlines()
    assert lines[0] == "ply" and lines[1] == "format ascii 1.0"
    end = lines.index("end_header")
    header = lines[:end]
    n_vertices = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    n_faces = int(next(h for h in header if h.startswith("element face")).split()[-1])
    assert (n_vertices, n_faces) == (len(ball_mesh.vertices), len(ball_mesh.faces))
    body = lines[end + 1 :]
    assert len(body) == n_vertices + n_faces
    assert all(line.startswith("3 ") for line in body[n_vertices:])
    with pytest.raises(ValueError, match=r"\.stl or \.ply"):
        write_mesh(ball_mesh, tmp_path / "tumour.obj")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tumour.ply"]


def test_render_views_writes_a_png(tmp_path: Path, ball_mesh: Mesh) -> None:
    path = render_views(ball_mesh, tmp_path / "views.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    empty = render_views(reconstruct(np.zeros((3, 3, 3)), spacing=(1, 1, 1)), tmp_path / "e.png")
    assert empty.stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_lgg_stack_uses_the_given_slice_thickness() -> None:
    label = np.zeros((16, 16, 6), dtype=np.uint8)
    label[4:10, 4:10, 1:5] = 1
    case = Case(
        case_id="TCGA_XX_0000",
        image=None,
        modalities=(),
        label=label,
        affine=np.eye(4),
        scheme=LGG,
        layout="lgg-tiff",
        spacing_known=False,
    )
    assumed = reconstruct_case(case)
    assert not assumed.spacing_known and assumed.height_mm == pytest.approx(4.0)
    thick = reconstruct_case(case, slice_thickness_mm=3.5)
    assert thick.spacing_known and thick.height_mm == pytest.approx(14.0)
    assert thick.voxel_volume_ml == pytest.approx(144 * 3.5 / 1000)
    with pytest.raises(ValueError, match="WT"):
        reconstruct_case(case, region="ET")
