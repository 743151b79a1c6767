"""Reading a prepared cache (written by :mod:`gliomaseg.prepare.workflow`).

Cache layout (format 1)::

    CACHE/
      index.json               cases, patients, strata, folds, settings (written last)
      cases/<case_id>/
        image.npy              (Z, C, X, Y) float16/float32, z-scored in the brain, cropped
        label.npy              (Z, X, Y) uint8 internal codes (only for labelled cases)
        case.json              geometry (affines, crop box), modalities, per-slice counts

Arrays are slice-major so one axial slice is one contiguous block of a memory map
(``np.load(..., mmap_mode="r")[z]``), which is what 2D training reads. Training, ``segment``,
``explain`` and the benchmarks read caches through this module only, so none of them needs
the prepare workflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.core.geometry import CANONICAL
from gliomaseg.io.outputs import CACHE_CASES, CACHE_INDEX
from gliomaseg.io.tiff import LGG_AXES, LGG_CHANNELS

CACHE_FORMAT = 1
#: File names inside one case folder of a cache.
CASE_META = "case.json"
CASE_IMAGE = "image.npy"
CASE_LABEL = "label.npy"

#: Axes of the arrays a network is trained on and applied to: canonical RAS+. Caches record
#: it (``"axes"`` in ``case.json`` and ``index.json``), checkpoints in ``preprocessing``.
NETWORK_AXES = CANONICAL
#: Before the LGG TIFFs were oriented, an LGG case's "canonical" arrays were the TIFF stack as
#: stored (rows, columns, slices): anatomically :data:`~gliomaseg.io.tiff.LGG_AXES`, not RAS+.
#: Caches and checkpoints that predate the ``axes`` record are read with this rule, so models
#: trained on them (the bundled ``lgg`` model) still see slices the way they were trained.
LEGACY_LGG_AXES = LGG_AXES


def is_cache(path: str | Path) -> bool:
    """Whether ``path`` is a prepared cache folder (it holds an ``index.json``)."""
    return (Path(path) / CACHE_INDEX).exists()


def case_dir(cache: str | Path, case_id: str) -> Path:
    """The folder of one prepared case."""
    return Path(cache) / CACHE_CASES / case_id


def case_axes(meta: dict[str, Any]) -> str:
    """Axes of a prepared case's arrays, from its ``case.json`` (legacy rule above)."""
    recorded = meta.get("axes")
    if recorded:
        return str(recorded)
    return LEGACY_LGG_AXES if meta.get("layout") == "lgg-tiff" else NETWORK_AXES


def cache_axes(cache: str | Path) -> str:
    """Axes of every array in a prepared cache (its ``index.json``, else its first case)."""
    index = load_index(cache)
    if index.get("axes"):
        return str(index["axes"])
    if not index["cases"]:
        return NETWORK_AXES
    first = case_dir(cache, index["cases"][0]["case_id"]) / CASE_META
    return case_axes(json.loads(first.read_text()))


def network_axes(meta: dict[str, Any]) -> str:
    """Axes a checkpoint's network was trained on (``preprocessing.axes``; legacy rule).

    Checkpoints written before the record are RAS+ unless they take exactly the LGG TIFF
    channels (pre-contrast, FLAIR, post-contrast): those were trained on TIFF-order stacks.
    """
    recorded = (meta.get("preprocessing") or {}).get("axes")
    if recorded:
        return str(recorded)
    return LEGACY_LGG_AXES if set(meta.get("modalities", ())) == set(LGG_CHANNELS) else NETWORK_AXES


def load_index(cache: str | Path) -> dict[str, Any]:
    """Read a cache's ``index.json``, checking the format version."""
    path = Path(cache) / CACHE_INDEX
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: not a prepared cache; run 'gliomaseg prepare DATA -o {cache}'"
        )
    index: dict[str, Any] = json.loads(path.read_text())
    if index.get("format") != CACHE_FORMAT:
        raise ValueError(
            f"{path}: cache format {index.get('format')} != {CACHE_FORMAT}; prepare it again"
        )
    return index


def open_case(
    cache: str | Path, case_id: str
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Memory-map one prepared case: image (Z, C, x, y), label (Z, x, y) or None, metadata."""
    folder = case_dir(cache, case_id)
    meta: dict[str, Any] = json.loads((folder / CASE_META).read_text())
    image = np.load(folder / CASE_IMAGE, mmap_mode="r")
    label = np.load(folder / CASE_LABEL, mmap_mode="r") if (folder / CASE_LABEL).exists() else None
    return image, label, meta
