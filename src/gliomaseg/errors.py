"""How errors reach users: one line each, naming the file (see the CLI's exit codes)."""

from __future__ import annotations

#: Exit codes of every command: success, an internal failure, bad input (one line printed).
EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


class InputError(ValueError):
    """The user's input or environment is unusable; printed as one line, exit code 2.

    A ``ValueError`` so that code catching ``ValueError`` for bad input keeps working.
    The message names the file, what is wrong and the fix.
    """


def one_line(err: BaseException | str) -> str:
    """An error message folded onto one line (whitespace runs become single spaces)."""
    return " ".join(str(err).split())


def failure_line(path: str, message: str) -> str:
    """``gliomaseg: error: ...`` for one failed case, naming ``path`` unless the message does."""
    text = one_line(message)
    return f"gliomaseg: error: {text if path in text else f'{path}: {text}'}"
