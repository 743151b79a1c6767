"""The choices of ``evaluate`` (no heavy imports: the command line builds its flags from them)."""

from __future__ import annotations

#: Evaluation modes: ``auto`` uses WT/TC/ET and each label unless the ground truth's scheme is
#: binary (LGG); ``binary`` compares "tumour" = any non-zero label.
SCHEMES: tuple[str, ...] = ("auto", "binary")
VIEWS: tuple[str, ...] = ("case", "slice")
#: Kept in step with :data:`gliomaseg.evaluate.metrics.EMPTY_POLICIES` (not imported: ``--help``
#: stays fast without scipy; tests/test_evaluate.py checks they agree).
EMPTY_CHOICES: tuple[str, ...] = ("brats", "nan")
