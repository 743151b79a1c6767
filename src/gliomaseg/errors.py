"""How errors reach users: one line each, naming the file (see the CLI's exit codes)."""

from __future__ import annotations


def one_line(err: BaseException | str) -> str:
    """An error message folded onto one line (whitespace runs become single spaces)."""
    return " ".join(str(err).split())


def failure_line(path: str, message: str) -> str:
    """``gliomaseg: error: ...`` for one failed case, naming ``path`` unless the message does."""
    text = one_line(message)
    return f"gliomaseg: error: {text if path in text else f'{path}: {text}'}"
