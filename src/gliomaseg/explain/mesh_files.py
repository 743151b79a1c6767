"""Mesh files: binary STL, ASCII PLY (with the ``SPACE=RAS`` tag) and a three-view PNG.

The coordinate conventions are :mod:`gliomaseg.explain.mesh`'s. Files are written atomically;
matplotlib is imported when a PNG is drawn.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gliomaseg.explain.mesh import Mesh
from gliomaseg.io.atomic import write_bytes_atomic, write_with

#: Views drawn by :func:`render_views`: (title, elevation, azimuth, axis looked along).
VIEWS: tuple[tuple[str, float, float, int], ...] = (
    ("axial (from above)", 90.0, -90.0, 2),
    ("coronal (from the front)", 0.0, 90.0, 1),
    ("sagittal (from the right)", 0.0, 0.0, 0),
)
#: Direction letters at the low and high end of each axis of a canonical RAS+ array.
_ENDS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("I", "S"))


def _normals(tri: NDArray[np.float64]) -> NDArray[np.float32]:
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(cross, axis=1, keepdims=True)
    return (cross / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _header(mesh: Mesh) -> str:
    """One header line; ``SPACE=RAS`` is the tag 3D Slicer reads (module docstring)."""
    if mesh.space == "RAS":
        return "gliomaseg tumour surface, scanner mm SPACE=RAS"
    return "gliomaseg tumour surface (mm along array axes)"


def stl_bytes(mesh: Mesh, *, header: str | None = None) -> bytes:
    """Binary STL: 80-byte header, uint32 triangle count, 50 bytes per triangle.

    The default header names the coordinate system (``SPACE=RAS`` for scanner coordinates).
    """
    header = _header(mesh) if header is None else header
    tri = mesh.vertices[mesh.faces] if len(mesh.faces) else np.zeros((0, 3, 3))
    record = np.dtype(
        [("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")]
    )  # little-endian, 50 bytes, as the format requires
    data = np.zeros(len(tri), dtype=record)
    data["normal"] = _normals(tri) if len(tri) else 0.0
    data["v"] = tri.astype(np.float32)
    head = header.encode("ascii", "replace")[:80].ljust(80, b" ")
    return head + struct.pack("<I", len(tri)) + data.tobytes()


def ply_text(mesh: Mesh) -> str:
    """ASCII PLY with float vertices (mm) and triangle faces."""
    lines = [
        "ply",
        "format ascii 1.0",
        f"comment {_header(mesh)}",
        f"element vertex {len(mesh.vertices)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(mesh.faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    lines += [f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in mesh.vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in mesh.faces]
    return "\n".join(lines) + "\n"


def write_mesh(mesh: Mesh, path: str | Path) -> Path:
    """Write a mesh as binary STL (``.stl``) or ASCII PLY (``.ply``), atomically.

    Raises:
        ValueError: another file extension, naming the path and the two choices.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix == ".stl":
        write_bytes_atomic(out, stl_bytes(mesh))
    elif suffix == ".ply":
        write_bytes_atomic(out, ply_text(mesh).encode("ascii"))
    else:
        raise ValueError(f"{out}: unknown mesh format '{suffix}'; name the file .stl or .ply")
    return out


def render_views(
    mesh: Mesh,
    path: str | Path,
    *,
    title: str | None = None,
    max_faces: int = 60000,
    dpi: int = 100,
) -> Path:
    """Draw axial, coronal and sagittal views of a mesh into a PNG, atomically.

    Args:
        mesh: The surface to draw (an empty mesh gives a PNG saying so).
        path: Output ``.png`` path.
        title: Figure title; default the volumes and height.
        max_faces: Draw at most this many triangles (an even subsample beyond it; the file is
            a preview, the measurements come from the full mesh).
        dpi: Resolution of the PNG.

    The letters R/L, A/P, S/I mark the ends of the scanner x, y, z axes (RAS+ meshes; for
    ``"array"`` meshes, of canonical RAS+ array axes); the lengths are mm on all three axes.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    out = Path(path)
    fig = Figure(figsize=(12, 4.4), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.suptitle(title or _default_title(mesh))
    faces = mesh.faces
    if len(faces) > max_faces:
        faces = faces[np.linspace(0, len(faces) - 1, max_faces).astype(np.int64)]
    tri = mesh.vertices[faces] if len(faces) else np.zeros((0, 3, 3))
    lo = mesh.vertices.min(axis=0) if len(mesh.vertices) else np.zeros(3)
    hi = mesh.vertices.max(axis=0) if len(mesh.vertices) else np.ones(3)
    centre, half = (lo + hi) / 2.0, max(float((hi - lo).max()) / 2.0, 1.0)
    normals = _normals(tri) if len(tri) else np.zeros((0, 3), dtype=np.float32)
    for k, (name, elev, azim, along) in enumerate(VIEWS):
        ax: Any = fig.add_subplot(1, 3, k + 1, projection="3d")
        if len(tri):
            shade = 0.35 + 0.6 * np.abs(normals @ _light(elev, azim))
            colours = np.stack([0.85 * shade, 0.3 * shade, 0.25 * shade, np.ones_like(shade)], 1)
            ax.add_collection3d(
                Poly3DCollection(tri, facecolors=colours, edgecolors=colours, linewidths=0.3)
            )
        else:
            ax.text2D(0.5, 0.5, "empty mask", transform=ax.transAxes, ha="center")
        _frame_view(ax, mesh, centre, half, along)
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(name, fontsize=10)
    write_with(out, lambda tmp: fig.savefig(tmp, format="png"))
    return out


def _frame_view(ax: Any, mesh: Mesh, centre: NDArray[np.float64], half: float, along: int) -> None:
    """Equal mm limits on all axes, the R/L, A/P, S/I letters and axis labels of one view."""
    for axis, letters in enumerate(_ENDS):
        if axis == along:
            continue
        for sign, letter in zip((-1.0, 1.0), letters, strict=True):
            pos = centre.copy()
            pos[axis] += sign * 1.1 * half
            ax.text(*pos, letter, color="navy", fontsize=11, ha="center", va="center")
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))
    labels = (ax.set_xlabel, ax.set_ylabel, ax.set_zlabel)
    ticks = (ax.set_xticks, ax.set_yticks, ax.set_zticks)
    for axis in range(3):
        if axis == along:  # seen end-on: its ticks would pile up in one spot
            ticks[axis]([])
        else:
            name = f"scanner {'xyz'[axis]}" if mesh.space == "RAS" else f"axis {axis}"
            labels[axis](f"{name} (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.locator_params(nbins=4)


def _light(elev: float, azim: float) -> NDArray[np.float64]:
    """Unit light direction: from the camera, tilted up and to the side for relief."""
    e, a = math.radians(elev + 25.0), math.radians(azim + 30.0)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def _default_title(mesh: Mesh) -> str:
    note = "" if mesh.spacing_known else " (spacing assumed)"
    return (
        f"mesh {mesh.mesh_volume_ml:.1f} mL, voxels {mesh.voxel_volume_ml:.1f} mL, "
        f"height {mesh.height_mm:.0f} mm, area {mesh.surface_area_mm2:.0f} mm²{note}"
    )


__all__ = ["VIEWS", "ply_text", "render_views", "stl_bytes", "write_mesh"]
