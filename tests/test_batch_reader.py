"""The batch's case reader: cases in order, a bounded read-ahead, errors kept per case."""

from __future__ import annotations

import threading

import pytest

from gliomaseg.segment import batch


class _Ref:
    def __init__(self, case_id: str) -> None:
        self.case_id = case_id


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the reader's ``read_case``; returns the case ids in the order they were read."""
    seen: list[str] = []
    lock = threading.Lock()

    def fake(ref: _Ref, *, with_label: bool) -> str:
        assert with_label is False
        with lock:
            seen.append(ref.case_id)
        if ref.case_id == "bad":
            raise ValueError("bad: unreadable")
        return f"case:{ref.case_id}"

    monkeypatch.setattr(batch, "read_case", fake)
    return seen


def test_cases_come_in_order_with_one_read_ahead(reads: list[str]) -> None:
    refs = [_Ref(c) for c in ("a", "b", "c", "d")]
    with batch.CaseReader(refs, ahead=1) as reader:  # type: ignore[arg-type]
        assert reader.take(0) == "case:a"
        # a and b were started up front; taking a starts b (already) and nothing beyond it
        assert len(reader._reads) <= 2
        assert reader.take(1) == "case:b"
        assert reader.take(2) == "case:c"
        assert reader.take(3) == "case:d"
    assert reads == ["a", "b", "c", "d"]


def test_a_bad_case_raises_its_own_error_and_the_next_is_read(reads: list[str]) -> None:
    refs = [_Ref(c) for c in ("a", "bad", "c")]
    with batch.CaseReader(refs) as reader:  # type: ignore[arg-type]
        assert reader.take(0) == "case:a"
        with pytest.raises(ValueError, match="bad: unreadable"):
            reader.take(1)
        assert reader.take(2) == "case:c"


def test_a_case_never_taken_is_dropped_not_kept(reads: list[str]) -> None:
    refs = [_Ref(c) for c in ("a", "b", "c")]
    with batch.CaseReader(refs) as reader:  # type: ignore[arg-type]
        reader.drop(0)  # the case failed before reading (e.g. its output not writable)
        assert 0 not in reader._reads
        assert reader.take(1) == "case:b"
        assert reader.take(2) == "case:c"
    assert "b" in reads and "c" in reads
