"""Size limits checked from a file's header before anything is allocated.

A forged header (a NIfTI claiming 20000^3 voxels, an HDF5 dataset of a billion rows) or a
gzip bomb must fail with a message, not exhaust memory. Readers look these up at call time,
so a test can lower them with ``monkeypatch.setattr(limits, "MAX_NIFTI_BYTES", ...)``.
"""

from __future__ import annotations

#: Largest NIfTI file, in bytes of header plus voxel data as the header declares them and as
#: a ``.nii.gz`` may decompress to: 512^3 voxels x 8 channels of float32 (4 GiB).
MAX_NIFTI_BYTES = 512**3 * 8 * 4

#: Largest 2D slice file (an LGG TIFF, a Kaggle HDF5 slice), in bytes of decoded array:
#: 256 MiB, over 100 times a 240x240x4 float64 slice.
MAX_SLICE_BYTES = 2**28


def gib(n: int) -> str:
    """``n`` bytes in GiB or MiB, for messages."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
