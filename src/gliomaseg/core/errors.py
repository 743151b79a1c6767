"""How errors reach users: one line each, naming the file (see the CLI's exit codes)."""

from __future__ import annotations

import errno

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


#: What to tell the user for the environment faults a write can meet.
_OS_HINTS = {
    errno.ENOSPC: "no space left on the device: free space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free space or write elsewhere",
    errno.EROFS: "read-only file system: write elsewhere",
    errno.EACCES: "permission denied: fix the permissions or write elsewhere",
    errno.EPERM: "operation not permitted: fix the permissions or write elsewhere",
    errno.ENAMETOOLONG: "file name too long: use a shorter case id or output path",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EISDIR: "a folder stands where a file is expected",
}


def failure_message(err: BaseException) -> str:
    """One line for anything a single case can raise, for the per-case boundary of a batch.

    The user's mistakes (:class:`InputError`, ``ValueError``, ``FileNotFoundError``) keep
    their message; an ``OSError`` gets a hint (disk full, read-only...); anything else is
    named by its type with a pointer to ``--debug`` for the traceback.
    """
    if isinstance(err, ValueError | FileNotFoundError):
        return one_line(err)
    if isinstance(err, OSError):
        hint = _OS_HINTS.get(err.errno or 0, err.strerror or str(err))
        where = f"{err.filename}: " if err.filename else ""
        return one_line(f"{where}{hint}")
    return one_line(
        f"unexpected {type(err).__name__}: {err} (a bug or an unusual input; "
        "rerun with --debug for the traceback and report it)"
    )
