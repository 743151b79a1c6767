"""What a ``segment`` run writes and reports, known before any model is loaded (no torch).

The output files of a case (:func:`outputs_for`, which also decides which cases are already
finished) and the stages a case goes through (:data:`STAGES`, for the progress bar).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.outputs import segment_outputs
from gliomaseg.segment.config import SegmentConfig

#: The stages of one case that ``segment_case`` reports to its ``stage`` callback.
STAGES = ("read", "infer", "postprocess", "write")
#: The stages :func:`gliomaseg.segment.batch.segment_inputs` reports after a case ends:
#: written, or failed (its error line follows at the end of the batch).
DONE, FAILED = "done", "failed"
#: ``progress(index, n_cases, case_id, stage)``: the batch's ``index``-th case (from 0) of
#: ``n_cases`` to segment enters ``stage`` (each of :data:`STAGES`, then :data:`DONE` or
#: :data:`FAILED`).
Progress = Callable[[int, int, str, str], None]


def outputs_for(ref: CaseRef, out_dir: Path, config: SegmentConfig | None = None) -> list[Path]:
    """The files (and, for LGG, the slice folder) a finished case has in ``out_dir``.

    The summary comes last: it is written last, so it marks a finished case.
    """
    slices = [out_dir / ref.case_id] if ref.layout == "lgg-tiff" else []
    probabilities = config is not None and config.save_probabilities
    return [*slices, *segment_outputs(ref.case_id, out_dir).written(probabilities=probabilities)]
