"""3D reconstruction of a tumour mask: marching-cubes surface at the true voxel spacing.

:func:`reconstruct` turns an (X, Y, Z) mask into a triangle :class:`Mesh` in millimetres
(array axes scaled by the voxel size, so anisotropic slices are not squashed) and reports
its height, enclosed volume, voxel volume and surface area. :func:`~gliomaseg.explain.mesh_files.write_mesh` saves
it as binary STL or ASCII PLY and :func:`~gliomaseg.explain.mesh_files.render_views` draws
axial, coronal and sagittal views to a PNG; both write atomically.

Surface extraction: the mask is zero-padded by one voxel (so the surface is closed at the
edges of the grid) and lightly smoothed before marching cubes at level 0.5. The smoothing is
*constrained*: voxels inside the mask keep a value >= 0.7 and voxels outside <= 0.3, so the
surface always separates exactly the same voxels as plain binary marching cubes (topology and
components are unchanged) while the staircase is softened. Without it, marching cubes on a
binary mask overestimates the area of a ball by 9-17 %; with it (sigma 0.5 voxel) the area is
within ~5 % and the volume within ~4 % for a 10 mm ball at (1, 1, 2) mm. ``smooth_sigma=0``
gives plain binary marching cubes.

For an LGG TIFF stack (no voxel size in the files) pass the slice thickness the caller knows
(:func:`reconstruct_case`); the mesh records whether the spacing was known.

Coordinates: given an affine (:func:`reconstruct_case` always passes the case's), vertices are
in **scanner RAS+ mm** (x to the patient's Right, y Anterior, z Superior): the world of the
NIfTI affine, the same as ``centroid_mm`` in ``segment``'s summary, so the surface overlays
the input image. Mesh formats carry no coordinate system, and viewers differ:

* 3D Slicer (since 4.11, 2020) assumes LPS for STL/PLY/OBJ files *unless* the header says
  ``SPACE=RAS`` (or ``SPACE=LPS``); we write ``SPACE=RAS`` in the STL header and as a PLY
  comment, so Slicer loads the surface onto the image with no option to set.
* ITK-SNAP's 3D world is the NIfTI (RAS) world: it exports its own meshes in RAS with the
  same ``SPACE=RAS`` comment; ITK-SNAP 4 loads VTK/VTP meshes, not STL/PLY (convert the STL
  with any VTK tool, keeping the coordinates).
* Tools that ignore the tag and assume LPS (ITK's physical space) need x and y negated.

Without an affine (:func:`reconstruct` with ``spacing`` only) vertices are ``index * spacing``
along the array axes and the files carry no ``SPACE`` tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.case import Case, voxel_spacing
from gliomaseg.core.geometry import check_spacing, voxel_to_world
from gliomaseg.core.labels import region_mask

#: Default Gaussian sigma (voxels) of the constrained smoothing before marching cubes.
SMOOTH_SIGMA = 0.5
#: Inside voxels keep >= 0.5 + margin and outside voxels <= 0.5 - margin after smoothing.
_CLAMP_MARGIN = 0.2


@dataclass(frozen=True)
class Mesh:
    """A closed triangle surface in millimetres.

    Attributes:
        vertices: (V, 3) float64 positions in mm: scanner RAS+ coordinates when ``space`` is
            ``"RAS"`` (built with an affine), else along the array axes (index * spacing,
            origin at the centre of voxel (0, 0, 0)) when ``space`` is ``"array"``.
        faces: (F, 3) int64 vertex indices, consistently oriented.
        spacing: Voxel size (mm) along the three array axes.
        height_mm: Number of slices (axis 2) holding the mask * slice thickness, mm.
        n_slices: Number of slices (axis 2) holding the mask.
        mesh_volume_ml: Volume enclosed by the surface (divergence theorem), mL.
        voxel_volume_ml: Number of mask voxels * voxel volume, mL.
        surface_area_mm2: Sum of the triangle areas, mm².
        spacing_known: False when the spacing was assumed (LGG TIFF without a given
            thickness): then every physical number is in units of the assumed spacing.
        space: ``"RAS"`` (scanner RAS+ mm) or ``"array"`` (index * spacing).
    """

    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]
    spacing: tuple[float, float, float]
    height_mm: float
    n_slices: int
    mesh_volume_ml: float
    voxel_volume_ml: float
    surface_area_mm2: float
    spacing_known: bool = True
    space: str = "array"

    @property
    def empty(self) -> bool:
        """True when the mask had no voxel (no triangles)."""
        return len(self.faces) == 0

    def stats(self) -> dict[str, Any]:
        """Scalar measurements as a JSON-able dict."""
        return {
            "n_vertices": len(self.vertices),
            "n_faces": len(self.faces),
            "spacing_mm": list(self.spacing),
            "spacing_known": self.spacing_known,
            "coordinates": _SPACE_WORDS[self.space],
            "n_slices": self.n_slices,
            "height_mm": self.height_mm,
            "mesh_volume_ml": self.mesh_volume_ml,
            "voxel_volume_ml": self.voxel_volume_ml,
            "surface_area_mm2": self.surface_area_mm2,
        }


def _spacing3(spacing: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = check_spacing(spacing)  # one validator for every spacing argument (core.geometry)
    return float(x), float(y), float(z)


def enclosed_volume(vertices: NDArray[np.floating], faces: NDArray[np.integer]) -> float:
    """Volume (in vertex units cubed) enclosed by a closed, consistently oriented surface.

    Divergence theorem: the sum over triangles of det(v0, v1, v2) / 6; the sign of the sum
    depends on the orientation, so its absolute value is returned.
    """
    if len(faces) == 0:
        return 0.0
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    return float(abs(signed))


def surface_area(vertices: NDArray[np.floating], faces: NDArray[np.integer]) -> float:
    """Sum of the triangle areas (in vertex units squared)."""
    if len(faces) == 0:
        return 0.0
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return float(0.5 * np.linalg.norm(cross, axis=1).sum())


def _field(mask: NDArray[np.bool_], sigma: float) -> NDArray[np.float32]:
    """Padded scalar field whose 0.5 level separates exactly the mask voxels."""
    padded = np.pad(mask, 1)
    field = padded.astype(np.float32)
    if sigma > 0:
        smooth = ndimage.gaussian_filter(field, sigma)
        field = np.where(
            padded, np.maximum(smooth, 0.5 + _CLAMP_MARGIN), np.minimum(smooth, 0.5 - _CLAMP_MARGIN)
        ).astype(np.float32)
    return field


def reconstruct(
    mask: NDArray[Any],
    *,
    spacing: Sequence[float] | None = None,
    affine: NDArray[np.floating] | None = None,
    smooth_sigma: float = SMOOTH_SIGMA,
    spacing_known: bool = True,
) -> Mesh:
    """Marching-cubes surface of a 3D mask at the true voxel spacing.

    Args:
        mask: (X, Y, Z) array; non-zero voxels are inside. A 2D (X, Y) mask is one slice.
        spacing: Voxel size (mm) along the array axes; the third is the slice thickness.
            Used when no ``affine`` is given (vertices then along the array axes).
        affine: 4x4 voxel -> scanner RAS+ mm matrix of ``mask``: vertices are then in scanner
            coordinates (the spacing is its column norms, ``spacing`` must be None).
        smooth_sigma: Sigma (voxels) of the constrained smoothing (module docstring);
            0 for plain binary marching cubes.
        spacing_known: Recorded on the mesh; False when ``spacing`` is an assumption.

    Returns:
        The mesh and its measurements. An empty mask gives a mesh with no vertices or faces
        and zero height, volumes and area (no error).

    Raises:
        ValueError: a mask that is not 2D/3D, a non-positive spacing, a bad affine, or both
            or neither of ``spacing`` and ``affine``.
    """
    matrix: NDArray[np.float64] | None = None
    if affine is not None and spacing is None:
        matrix = _check_affine(affine)
        step = _spacing3(voxel_spacing(matrix))
    elif spacing is not None and affine is None:
        step = _spacing3(spacing)
    else:
        raise ValueError("pass exactly one of spacing (array axes) or affine (scanner mm)")
    arr = np.asarray(mask)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"mask must be 3D (X, Y, Z), got shape {arr.shape}")
    inside = arr != 0
    count = int(np.count_nonzero(inside))
    n_slices = int(np.count_nonzero(inside.any(axis=(0, 1))))
    if count:
        vertices, faces = _surface(inside, step, matrix, smooth_sigma)
    else:  # an empty mask: an empty mesh, no error
        vertices, faces = np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return Mesh(
        vertices=vertices,
        faces=faces,
        spacing=step,
        height_mm=n_slices * step[2],
        n_slices=n_slices,
        mesh_volume_ml=enclosed_volume(vertices, faces) / 1000.0,
        voxel_volume_ml=count * step[0] * step[1] * step[2] / 1000.0,
        surface_area_mm2=surface_area(vertices, faces),
        spacing_known=spacing_known,
        space="array" if matrix is None else "RAS",
    )


def _surface(
    inside: NDArray[np.bool_],
    step: tuple[float, float, float],
    matrix: NDArray[np.float64] | None,
    smooth_sigma: float,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Vertices (mm) and outward-wound faces of a non-empty mask's marching-cubes surface."""
    from skimage.measure import marching_cubes

    verts, faces, _, _ = marching_cubes(_field(inside, smooth_sigma), 0.5)
    index = np.asarray(verts, dtype=np.float64) - 1.0  # undo the padding
    vertices = index * np.asarray(step) if matrix is None else voxel_to_world(index, matrix)
    # skimage winds the triangles so that, in index space, their right-hand normals point
    # inwards here; STL wants them outwards. A mirroring affine turns the winding over.
    mirrored = matrix is not None and np.linalg.det(matrix[:3, :3]) < 0
    faces = np.asarray(faces, dtype=np.int64)
    if not mirrored:
        faces = np.ascontiguousarray(faces[:, ::-1])
    return vertices, faces


def _check_affine(affine: NDArray[np.floating]) -> NDArray[np.float64]:
    matrix = np.asarray(affine, dtype=np.float64)
    if (
        matrix.shape != (4, 4)
        or not np.all(np.isfinite(matrix))
        or abs(np.linalg.det(matrix[:3, :3])) < 1e-12
    ):
        raise ValueError(
            f"affine must be a finite, invertible 4x4 voxel -> mm matrix, got shape "
            f"{matrix.shape}; pass Case.affine"
        )
    return matrix


def reconstruct_case(
    case: Case,
    *,
    region: str = "WT",
    slice_thickness_mm: float | None = None,
    smooth_sigma: float = SMOOTH_SIGMA,
) -> Mesh:
    """Mesh of a region (``WT``, ``TC``, ``ET``) of a case's label map, in scanner RAS+ mm.

    The vertices are placed by the case's affine (module docstring: Coordinates), so the
    surface overlays the input image in a viewer.

    Args:
        case: A canonical case with a label map (any layout, LGG TIFF stacks included).
        region: BraTS region to reconstruct; binary schemes only have ``WT``.
        slice_thickness_mm: Slice thickness to use instead of ``case.spacing[2]``, e.g. the
            one an LGG TIFF stack's protocol states (the files carry no voxel size).
        smooth_sigma: See :func:`reconstruct`.

    Raises:
        ValueError: the case has no label map, or the region is unknown.
    """
    if case.label is None:
        raise ValueError(f"{case.case_id}: case has no label map to reconstruct; pass one")
    if case.scheme is not None and case.scheme.binary and region != "WT":
        raise ValueError(f"{case.case_id}: binary masks only have the WT region, not {region}")
    affine = np.array(case.affine, dtype=np.float64)
    if slice_thickness_mm is not None:
        _spacing3((1.0, 1.0, slice_thickness_mm))
        affine[:3, 2] *= float(slice_thickness_mm) / float(np.linalg.norm(affine[:3, 2]))
    known = case.spacing_known or slice_thickness_mm is not None
    return reconstruct(
        region_mask(case.label, region),
        affine=affine,
        smooth_sigma=smooth_sigma,
        spacing_known=known,
    )


#: How :attr:`Mesh.space` is described in files and stats.
_SPACE_WORDS = {
    "RAS": "scanner RAS+ mm (x Right, y Anterior, z Superior)",
    "array": "mm along the array axes (index * spacing), no scanner origin",
}


__all__ = [
    "SMOOTH_SIGMA",
    "Mesh",
    "enclosed_volume",
    "reconstruct",
    "reconstruct_case",
    "surface_area",
]
