"""The data dictionary of the features: every key, its formula and unit (:data:`FEATURE_DOCS`).

It is also the dictionary written beside the features (``<case>_features.json``'s ``docs``).
"""

from __future__ import annotations

from gliomaseg.explain.volumes import COMPARTMENTS, CORE_COMPARTMENTS, MEASURED


def _docs() -> dict[str, str]:
    # A data table (one entry per feature), not logic: long on purpose.
    docs = {
        "kind": '"case" or "slice": which function made the dict.',
        "empty": "True when the whole tumour (WT, label > 0) has no voxel.",
        "binary": "True for binary masks (label > 0 is tumour); compartment features are None.",
        "shape": "Spatial shape (X, Y, Z) of the label map, voxels.",
        "spacing_mm": "Voxel size along array axes 0, 1, 2: column norms of the affine, mm.",
        "voxel_volume_ml": "Volume of one voxel: sx * sy * sz / 1000, mL.",
        "n_voxels": "Number of whole-tumour voxels (label > 0) in the case or slice.",
        "brain_reference": (
            '"brain_mask", "image" (non-zero voxels of any channel), "foreground" (bright '
            'region of an image without zero background) or "field_of_view": what the '
            "midline, brain fraction and position are measured against."
        ),
        "brain_volume_ml": "Brain volume: brain voxels * voxel volume, mL (None without a brain).",
        "brain_fraction": (
            "Whole-tumour volume / brain volume (case) or WT area / brain area in the slice "
            "(slice), 0-1; None without a brain mask or image."
        ),
        "et_rim_fraction": (
            "Share of the one-voxel shell around the necrotic core (6-connected dilation of "
            "NCR minus NCR) that is enhancing tumour, 0-1; None without NCR or for binary masks."
        ),
        "n_components": (
            "Connected components of the whole tumour: 26-connectivity in 3D (case), "
            "8-connectivity in 2D (slice); 0 when empty."
        ),
        "n_components_major": (
            "Components holding at least 5 % of the WT volume (case) or area (slice): specks "
            "left by a segmentation do not count; 0 when empty."
        ),
        "largest_component_fraction": "Volume of the largest WT component / WT volume, 0-1.",
        "solidity": (
            "WT volume / volume of its convex hull (case: 3D hull of the voxels' face "
            "centres; slice: pixels inside the 2D hull of the pixel squares), clipped to 0-1; "
            "None when empty. Ratios of volumes do not change under the affine, so this is "
            "spacing-independent."
        ),
        "irregularity": "1 - solidity, 0-1 (0 = convex); None when empty.",
        "opened_extent_mm": (
            "extent_mm of the whole tumour after a morphological opening by a ball (case) or "
            "disc (slice, in-plane) of radius opening_radius_mm: the size of the tumour's bulk, "
            "blind to strands and stalks thinner than about twice that radius; zeros when "
            "nothing is left (empty or thinner everywhere)."
        ),
        "opening_radius_mm": "Radius of the opening behind opened_extent_mm, mm.",
        "n_slices": "Number of axial (axis 2) slices holding tumour.",
        "height_mm": "n_slices * slice thickness (voxel size along axis 2), mm.",
        "max_slice_area_mm2": "Largest WT area over the axial (axis 2) slices, mm².",
        "centroid_voxel": (
            "WT centroid in (fractional) voxel indices (i, j, k) of the input file's array as "
            "stored (explain passes the mapping; of the label array when none is given)."
        ),
        "centroid_mm": "WT centroid in scanner RAS+ coordinates (x, y, z): affine @ voxel, mm.",
        "extent_mm": (
            "Size of the WT's bounding box along scanner x, y, z: range of voxel centres plus "
            "the extent of one voxel (sum of |affine| along each row), mm; zeros when empty."
        ),
        "midline_x_mm": (
            "Scanner x of the brain's midline plane: x of the brain centroid (or of the field "
            "of view's centre without a brain), mm; None when the orientation is unknown."
        ),
        "midline_band_mm": "Half-width of the band around the midline plane counted as midline, mm.",
        "offset_from_midline_mm": (
            "centroid_mm[0] - midline_x_mm: signed distance of the tumour centroid from the "
            "midline, mm (> 0 = patient Right); None when empty or orientation unknown."
        ),
        "left_fraction": (
            "Share of WT voxels with x < midline - band (patient Left), 0-1; 0 when empty, "
            "None when the orientation is unknown."
        ),
        "right_fraction": (
            "Share of WT voxels with x > midline + band (patient Right), 0-1; 0 when empty, "
            "None when the orientation is unknown."
        ),
        "midline_fraction": (
            "Share of WT voxels with |x - midline| <= band, 0-1; 0 when empty, None when the "
            "orientation is unknown."
        ),
        "laterality": (
            '"left", "right", "bilateral" (both sides >= bilateral fraction of the volume) or '
            '"midline" (>= half in the band); None when empty or when the input does not '
            "record its orientation. From scanner x, not array order "
            "(gliomaseg.core.laterality)."
        ),
        "laterality_note": "Why laterality is None although there is a tumour (if it is).",
        "position_in_brain": (
            "WT centroid as fractions (x, y, z) of the brain's scanner bounding box: 0 = its "
            "left / posterior / inferior edge, 1 = right / anterior / superior; None when empty "
            "or the orientation is unknown."
        ),
        "axis": "Array axis the slices are taken along (2 = axial in RAS+ order).",
        "slice_index": "Index of the slice along that axis.",
        "pixel_area_mm2": "Area of one in-plane pixel: product of the two in-plane voxel sizes.",
        "brain_area_mm2": "Brain area in the slice: brain pixels * pixel area, mm².",
        "perimeter_mm": (
            "Length of the WT boundary: marching-squares contours at level 0.5 (holes "
            "included) simplified by Douglas-Peucker at 1 pixel to remove the staircase, "
            "scaled by the in-plane pixel size, mm; 0 when empty."
        ),
        "compactness": (
            "4 * pi * area / perimeter², clipped to 0-1 (1 = disc, pi/4 = square); None when empty."
        ),
        "eccentricity": (
            "sqrt(1 - l_min / l_max) of the in-plane second moments (mm²) of the WT pixel "
            "squares: 0 = disc, -> 1 = line; None when empty."
        ),
    }
    words = {
        "WT": "whole tumour (labels 1, 2, 3)",
        "TC": "tumour core (labels 1, 3)",
        "ET": "enhancing tumour (label 3)",
        "NCR": "necrotic / non-enhancing core (label 1)",
        "ED": "edema (label 2)",
    }
    for name in MEASURED:
        docs[f"volume_ml_{name}"] = f"Volume of the {words[name]}: voxels * voxel volume, mL" + (
            "." if name == "WT" else " (None for binary masks)."
        )
        docs[f"area_mm2_{name}"] = (
            f"Area of the {words[name]} in the slice: pixels * pixel area, mm²"
            + ("." if name == "WT" else " (None for binary masks).")
        )
    for name in COMPARTMENTS:
        docs[f"proportion_{name}"] = (
            f"{name} volume (case) or area (slice) / WT, 0-1; 0 when empty, None for binary."
        )
    for name in CORE_COMPARTMENTS:
        docs[f"core_fraction_{name}"] = (
            f"{name} volume (case) or area (slice) / tumour core (TC = NCR + ET), 0-1; edema "
            "is not in the denominator. None when the core is empty or for binary masks."
        )
    return docs


#: Every feature key -> its formula and unit.


#: Every feature key -> its formula and unit.
FEATURE_DOCS: dict[str, str] = _docs()


__all__ = ["FEATURE_DOCS"]
