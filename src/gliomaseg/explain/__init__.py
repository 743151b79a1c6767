"""Explain a segmentation: physical features, plain-language summaries, 3D reconstruction.

* :mod:`~gliomaseg.explain.features` -- volumes (mL), areas (mm²), shape, composition,
  laterality and position of a label map, per case and per slice.
* :mod:`~gliomaseg.explain.summary` -- rule-based categories turned into sentences chosen
  (never generated) from a curated library by sentence-embedding retrieval, with safety rules.
* :mod:`~gliomaseg.explain.mesh` -- marching-cubes surface at the true voxel spacing, its
  volume and area, STL/PLY export and a three-view PNG.

Submodules import their heavy dependencies (scikit-image, matplotlib, sentence-transformers)
lazily, inside the functions that need them.
"""

from __future__ import annotations
