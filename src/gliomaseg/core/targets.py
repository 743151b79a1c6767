"""What a network predicts: softmax classes or sigmoid regions, as groups of internal labels.

A :class:`TargetSpec` turns an internal label map (0 bg, 1 NCR/NET, 2 ED, 3 ET) into the
network's training target and turns network probabilities back into internal labels.

* ``softmax``: each class is a group of internal codes (``[[0], [1], [2], [3]]`` is the
  4-class setup; ``[[0, 1], [2], [3]]`` the published "background, edema, enhancing"
  3-class setup, where NCR/NET counts as background).
* ``sigmoid``: each channel is a possibly overlapping group (BraTS regions
  WT ``[1, 2, 3]``, TC ``[1, 3]``, ET ``[3]``; the multi-label NCR/NET, ED, ET channels
  ``[1], [2], [3]``; binary whole tumour ``[1, 2, 3]``).

Decoding sigmoid outputs picks, per voxel, the internal code that best explains all channels
at once (maximum likelihood under independent sigmoids), so nested regions decode to the
BraTS labels without hand-written precedence rules (WT only -> ED, WT+TC -> NCR, all -> ET).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CODES = (0, 1, 2, 3)


@dataclass(frozen=True)
class TargetSpec:
    """Network output definition.

    Attributes:
        kind: ``"softmax"`` or ``"sigmoid"``.
        groups: Internal codes covered by each output channel.
        names: Name of each output channel (for logs and metrics).
    """

    kind: str
    groups: tuple[tuple[int, ...], ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("softmax", "sigmoid"):
            raise ValueError(f"target kind '{self.kind}' must be 'softmax' or 'sigmoid'")
        if len(self.groups) != len(self.names) or not self.groups:
            raise ValueError("target needs one name per group and at least one group")
        if self.kind == "softmax":
            flat = sorted(c for g in self.groups for c in g)
            if flat != list(CODES):
                raise ValueError(
                    f"softmax groups {self.groups} must cover each internal code 0-3 exactly once"
                )

    @property
    def channels(self) -> int:
        """Number of network output channels."""
        return len(self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "groups": [list(g) for g in self.groups],
            "names": list(self.names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> TargetSpec:
        """Build from a dict or a preset name (see :data:`TARGETS`)."""
        if isinstance(data, str):
            if data not in TARGETS:
                raise ValueError(f"unknown target '{data}'; choose one of {sorted(TARGETS)}")
            return TARGETS[data]
        return cls(
            kind=str(data["kind"]),
            groups=tuple(tuple(int(c) for c in g) for g in data["groups"]),
            names=tuple(str(n) for n in data["names"]),
        )

    def encode(self, label: np.ndarray) -> np.ndarray:
        """Training target from internal codes.

        Args:
            label: (...) integer internal codes.

        Returns:
            softmax: (...) int64 class indices; sigmoid: (K, ...) float32 0/1 channels.
        """
        if self.kind == "softmax":
            lut = np.zeros(len(CODES), dtype=np.int64)
            for k, group in enumerate(self.groups):
                lut[list(group)] = k
            return lut[label]
        return np.stack([np.isin(label, g) for g in self.groups]).astype(np.float32)

    def decode(self, probs: np.ndarray) -> np.ndarray:
        """Internal codes from probabilities.

        Args:
            probs: (K, ...) softmax or sigmoid probabilities.

        Returns:
            (...) uint8 internal codes.
        """
        if self.kind == "softmax":
            reps = np.array([g[0] for g in self.groups], dtype=np.uint8)
            return reps[np.argmax(probs, axis=0)]
        # log P(code) = sum_k log(1 - p_k) + sum_{k: code in group k} logit(p_k); the first sum
        # is the same for every code, so the best code maximises a sum of channel logits.
        # Where every p_k <= 0.5 every logit is <= 0, so no code beats background (0, the
        # first maximum on ties): only voxels with some p_k > 0.5 need scoring.
        out = np.zeros(probs.shape[1:], dtype=np.uint8)
        where = np.flatnonzero((probs > 0.5).any(axis=0))
        p = np.clip(probs.reshape(len(probs), -1)[:, where].astype(np.float32), 1e-6, 1 - 1e-6)
        logits = np.log(p) - np.log1p(-p)
        member = np.array([[code in g for g in self.groups] for code in CODES], dtype=np.float32)
        scores = np.tensordot(member, logits, axes=1)
        out.reshape(-1)[where] = np.argmax(scores, axis=0)
        return out


TARGETS: dict[str, TargetSpec] = {
    "classes4": TargetSpec(
        "softmax", ((0,), (1,), (2,), (3,)), ("background", "NCR/NET", "ED", "ET")
    ),
    "classes3-bg-ed-et": TargetSpec("softmax", ((0, 1), (2,), (3,)), ("background", "ED", "ET")),
    "regions": TargetSpec("sigmoid", ((1, 2, 3), (1, 3), (3,)), ("WT", "TC", "ET")),
    "multilabel": TargetSpec("sigmoid", ((1,), (2,), (3,)), ("NCR/NET", "ED", "ET")),
    "binary": TargetSpec("sigmoid", ((1, 2, 3),), ("tumour",)),
}
