"""A convolutional autoencoder of 2D tumour masks, and the latent space it learns.

``gliomaseg autoencoder train`` learns to squeeze each axial whole-tumour mask into a short
vector (64 numbers by default, 128 optional) and back; ``gliomaseg autoencoder embed`` writes
those vectors per slice and per case, a PCA plot of them, and how the first principal
components relate to the tumour's size and irregularity.

* :mod:`~gliomaseg.explain.autoencoder.config` -- :class:`AutoencoderConfig` (torch-free, so
  the command line can show its defaults quickly).
* :mod:`~gliomaseg.explain.autoencoder.data` -- masks on a fixed physical grid (:class:`MaskSet`,
  :func:`load_masks`, :func:`fit_mask`) and the patient-wise validation split.
* :mod:`~gliomaseg.explain.autoencoder.model` -- the network, :func:`encode`,
  :func:`reconstruct`, :func:`dice_per_mask`, :func:`load_autoencoder`.
* :mod:`~gliomaseg.explain.autoencoder.training` -- :func:`train_autoencoder` (and resume).
* :mod:`~gliomaseg.explain.autoencoder.embed` -- :func:`embed`, :func:`pca`,
  :func:`latent_correlations`.

The package itself imports nothing, so that importing the light ``config`` does not pull in
torch (``model``, ``training`` and ``embed`` do).
"""
