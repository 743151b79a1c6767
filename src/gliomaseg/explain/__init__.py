"""Explain a segmentation: physical features, plain-language summaries, 3D reconstruction.

* :mod:`~gliomaseg.explain.features` -- volumes (mL), areas (mm²), shape, composition,
  laterality and position of a label map, per case and per slice, built from
  :mod:`~gliomaseg.explain.volumes`, :mod:`~gliomaseg.explain.shape` and
  :mod:`~gliomaseg.explain.position`; every key is documented in
  :mod:`~gliomaseg.explain.feature_docs`.
* :mod:`~gliomaseg.explain.summary` -- rule-based categories
  (:mod:`~gliomaseg.explain.categories`) turned into sentences chosen (never generated) from a
  curated library (:mod:`~gliomaseg.explain.sentences`) by sentence-embedding retrieval
  (:mod:`~gliomaseg.explain.embedder`), with safety rules.
* :mod:`~gliomaseg.explain.mesh` -- marching-cubes surface at the true voxel spacing, its
  volume and area; :mod:`~gliomaseg.explain.mesh_files` writes STL/PLY and a three-view PNG.
* :mod:`~gliomaseg.explain.workflow` -- ``gliomaseg explain``: inputs
  (:mod:`~gliomaseg.explain.inputs`), the description of a case
  (:mod:`~gliomaseg.explain.describe`) and the files written.
* :mod:`~gliomaseg.explain.autoencoder` -- a convolutional autoencoder of 2D tumour masks and
  its latent space (``gliomaseg autoencoder train|embed``).

Submodules import their heavy dependencies (scikit-image, matplotlib, sentence-transformers)
lazily, inside the functions that need them. The command lines are in :mod:`gliomaseg.cli`.
"""

from __future__ import annotations
