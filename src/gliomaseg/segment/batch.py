"""``gliomaseg segment`` over a batch: find the cases, skip finished ones, choose and load
the models, and segment every case with its reading overlapped.

A :class:`CaseReader` thread reads the next case while the current one is segmented, and the
first case while torch is imported and the model loaded: this module imports no torch, and
:func:`segment_inputs` imports the torch side (:mod:`gliomaseg.segment.workflow`) only after
the reader has started. Reading is mostly gzip inflation and array copies, which release the
GIL, so it runs beside inference and beside the import of torch (measured in
``bench/segment_speed.py``: the cold command and ``--batch``).
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from gliomaseg.core.case import Case
from gliomaseg.core.errors import failure_message
from gliomaseg.io.caseref import CaseRef
from gliomaseg.io.layouts import discover_all, read_case
from gliomaseg.io.outdir import OutputFolder, check_location
from gliomaseg.segment.config import SegmentConfig
from gliomaseg.segment.plan import DONE, FAILED, Progress, outputs_for

if TYPE_CHECKING:
    from gliomaseg.segment.models import Segmenter

log = logging.getLogger(__name__)

#: What each bundled model is chosen for when ``--model`` is not given (in stderr lines).
INPUT_KINDS = {"lgg": "LGG TIFF input", "brats": "four-modality (FLAIR, T1, T1c, T2) input"}


def default_model(ref: CaseRef) -> str:
    """The bundled model that fits a case's modalities when the user names none.

    LGG TIFF stacks hold pre-contrast, FLAIR and post-contrast (no T2): the ``lgg`` model;
    every other layout gives the four BraTS modalities: ``brats``.
    """
    return "lgg" if ref.layout == "lgg-tiff" else "brats"


class CaseReader:
    """Reads ``refs`` in order in one background thread, at most ``ahead`` cases ahead.

    :meth:`take` returns case ``i`` (waiting for it) and starts reading the one ``ahead``
    places further, so at most ``ahead + 1`` cases are in memory. A case that fails to read
    raises its own error from :meth:`take`; the others are unaffected. Use it as a context
    manager: leaving cancels the reads not started and waits for the one running, so no
    thread outlives the batch.
    """

    def __init__(self, refs: list[CaseRef], *, ahead: int = 1) -> None:
        self.refs = refs
        self.ahead = max(int(ahead), 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gliomaseg-read")
        self._reads: dict[int, Future[Case]] = {}
        for i in range(min(self.ahead + 1, len(refs))):
            self._submit(i)

    def _submit(self, index: int) -> None:
        if index < len(self.refs) and index not in self._reads:
            self._reads[index] = self._pool.submit(read_case, self.refs[index], with_label=False)

    def take(self, index: int) -> Case:
        """Case ``index`` of ``refs`` (read, canonical, without its label)."""
        self._submit(index)
        self._submit(index + self.ahead)
        return self._reads.pop(index).result()

    def drop(self, index: int) -> None:
        """Forget case ``index`` if it was never taken (a case that failed before reading),
        so its arrays are not kept for the rest of the batch."""
        read = self._reads.pop(index, None)
        if read is not None:
            read.cancel()

    def __enter__(self) -> CaseReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class BatchResult:
    """What :func:`segment_inputs` did: case ids segmented and skipped, ``(path, message)``
    per failure."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def segment_inputs(
    inputs: list[Path],
    out_dir: Path,
    *,
    model: str | Path | None,
    config: SegmentConfig,
    part: tuple[int, int] = (1, 1),
    progress: Progress | None = None,
) -> BatchResult:
    """Segment every case under ``inputs``; one bad case is recorded and the rest go on.

    ``model=None`` picks the bundled model per case from its modalities
    (:func:`default_model`) and logs the choice. ``progress`` is told each case's stages
    (:data:`gliomaseg.segment.plan.Progress`); the command line draws a bar from it.
    """
    refs, bad = discover_all(inputs, cases_only=True)  # case ids unique across inputs
    result = BatchResult(failures=[(str(p), msg) for p, msg in bad])
    i, n = part
    refs = sorted(refs, key=lambda r: (r.case_id, str(r.path)))[i - 1 :: n]
    check_location(out_dir, [r.path for r in refs], data_paths=inputs)
    out = OutputFolder(out_dir, overwrite=config.overwrite)
    todo = []
    for ref in refs:
        paths = outputs_for(ref, out_dir, config)
        if not config.overwrite and all(p.exists() for p in paths) and out.owns(*paths):
            result.skipped.append(ref.case_id)
        else:
            todo.append(ref)
    if not todo:
        return result
    with CaseReader(todo) as reader:
        models = _load_models(todo, model, config)
        from gliomaseg.segment.workflow import segment_case  # imported by _load_models

        report = progress or _no_progress
        for index, ref in enumerate(todo):
            stage = partial(report, index, len(todo), ref.case_id)
            try:
                segment_case(
                    ref,
                    out,
                    models[ref.case_id],
                    config,
                    stage=stage,
                    read=partial(reader.take, index),
                )
                result.done.append(ref.case_id)
                stage(DONE)
            except Exception as err:  # the per-case boundary: one bad case never stops a batch
                log.debug("%s failed", ref.path, exc_info=True)
                result.failures.append((str(ref.path), failure_message(err)))
                stage(FAILED)
            finally:
                reader.drop(index)
    return result


#: GIL switch interval (s) while the first case is read beside the imports (default 0.005).
#: Reading is mostly C calls that release the GIL, with short Python steps between them; at
#: the default interval each step waits for the importing thread to yield, and the first read
#: ends after the imports instead of during them (cold segment 0.3 s faster here at 0.0005).
_READ_SWITCH_INTERVAL = 0.0005


def _load_models(
    todo: list[CaseRef], model: str | Path | None, config: SegmentConfig
) -> dict[str, Segmenter]:
    """Case id -> its loaded :class:`~gliomaseg.segment.models.Segmenter` (one per model).

    Imports the torch side (:mod:`gliomaseg.segment.workflow`, torch, scipy.ndimage): called
    once the :class:`CaseReader` is reading the first case, which then overlaps those ~1.6 s
    (most of a one-case run's cold start).
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, _READ_SWITCH_INTERVAL))
    try:
        import gliomaseg.segment.workflow  # noqa: F401  (loaded here, used by the caller)
        from gliomaseg.segment.models import Segmenter

        chosen = {ref.case_id: model if model is not None else default_model(ref) for ref in todo}
        loaded = {}
        for name in dict.fromkeys(chosen.values()):
            if model is None:
                log.info(
                    "using the bundled %s model for %s", name, INPUT_KINDS.get(str(name), name)
                )
            loaded[name] = Segmenter.load(name, device=config.device)
    finally:
        sys.setswitchinterval(interval)
    return {case_id: loaded[name] for case_id, name in chosen.items()}


def _no_progress(index: int, n_cases: int, case_id: str, stage: str) -> None:
    """The :data:`gliomaseg.segment.plan.Progress` callback that shows nothing."""
