"""Volumes, areas and composition of a label map: voxel counts per compartment and region.

Internal label codes (:mod:`gliomaseg.core.labels`): NCR/NET, ED, ET; regions WT (label > 0)
and TC (NCR + ET). Shares are of WT (``proportion_*``) or of the core (``core_fraction_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from gliomaseg.core.labels import ED, ET, NCR

#: Compartments (internal label code) and regions reported by volume / area.
COMPARTMENTS: dict[str, int] = {"NCR": NCR, "ED": ED, "ET": ET}
MEASURED: tuple[str, ...] = ("WT", "TC", "ET", "NCR", "ED")
#: Compartments of the tumour core, reported as shares of it (``core_fraction_*``).
CORE_COMPARTMENTS: tuple[str, ...] = ("NCR", "ET")


def composition(
    counts: Mapping[str, int], unit: float, *, binary: bool, prefix: str
) -> dict[str, Any]:
    """Volumes/areas per compartment and region, and proportions of WT."""
    out: dict[str, Any] = {}
    wt = counts["WT"]
    for name in MEASURED:
        out[f"{prefix}_{name}"] = None if binary and name != "WT" else counts[name] * unit
    for name in COMPARTMENTS:
        out[f"proportion_{name}"] = None if binary else (counts[name] / wt if wt else 0.0)
    core = counts["TC"]
    for name in CORE_COMPARTMENTS:
        out[f"core_fraction_{name}"] = None if binary or not core else counts[name] / core
    return out


def counts_of(label: NDArray[np.integer], *, binary: bool) -> dict[str, int]:
    wt = int(np.count_nonzero(label))
    if binary:
        return dict.fromkeys(MEASURED, 0) | {"WT": wt}
    per = {name: int(np.count_nonzero(label == code)) for name, code in COMPARTMENTS.items()}
    return {"WT": wt, "TC": per["NCR"] + per["ET"], **per}


def rim_fraction(label: NDArray[np.integer], *, binary: bool) -> float | None:
    """Share of the one-voxel shell around NCR that is ET (None without NCR)."""
    if binary:
        return None
    ncr = label == NCR
    if not ncr.any():
        return None
    shell = ndimage.binary_dilation(np.pad(ncr, 1)) & ~np.pad(ncr, 1)
    et = np.pad(label == ET, 1)
    return int(np.count_nonzero(shell & et)) / max(int(np.count_nonzero(shell)), 1)


__all__ = [
    "COMPARTMENTS",
    "CORE_COMPARTMENTS",
    "MEASURED",
    "composition",
    "counts_of",
    "rim_fraction",
]
