"""Write a segmentation back in the input's own geometry and label scheme (``<case>_seg.nii.gz``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gliomaseg.core.case import Case
from gliomaseg.core.labels import LabelScheme, get_scheme
from gliomaseg.io import nifti


def write_segmentation(
    case: Case,
    label: np.ndarray,
    path: str | Path,
    *,
    scheme: LabelScheme | str | None = None,
) -> Path:
    """Write an internal-code label map as NIfTI on the input file's grid.

    Args:
        case: The case the label belongs to (its source geometry is used).
        label: (X, Y, Z) internal codes on the case's canonical grid.
        path: Output ``.nii.gz`` path (written atomically).
        scheme: Label scheme of the output; default: the input's own scheme (BraTS 2020 when
            the input had none).

    Returns:
        The path written. The file has the input's shape and affine exactly, and the header
        geometry (pixdim, sform/qform codes, units) of the input's first image.

    Raises:
        ValueError: wrong label shape, or internal codes the scheme cannot represent.
    """
    if tuple(label.shape) != case.shape:
        raise ValueError(
            f"{case.case_id}: label shape {tuple(label.shape)} does not match the case grid {case.shape}"
        )
    out_scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    out_scheme = out_scheme or case.scheme or get_scheme("brats2020")
    raw = out_scheme.decode(label.astype(np.uint8, copy=False))
    raw = case.to_source(raw)
    header = None
    reference = next((Path(p) for p in case.source.values() if nifti.is_nifti(Path(p))), None)
    if reference is not None and reference.exists():
        header = nifti.read_header(reference).header
    if case.source_shape is not None and len(case.source_shape) == 2:
        raw = raw[..., 0]
    affine = case.source_affine if case.source_affine is not None else case.affine
    nifti.write_nifti(
        path, raw, affine, header=header, dtype=np.uint8, orientation_known=case.orientation_known
    )
    return Path(path)
