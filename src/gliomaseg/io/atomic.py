"""Atomic file writes: a reader never sees a half-written output, even after a kill."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: Every temporary name starts with this and the writing process's id, so a later run can
#: tell an orphan (its process is gone, e.g. after SIGKILL) from another process's live work.
TMP_PREFIX = ".gstmp-"


def _tmp_prefix() -> str:
    return f"{TMP_PREFIX}{os.getpid()}-"


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, *, directory: bool = False) -> None:
    # mkstemp/mkdtemp create 0600/0700 whatever the umask; outputs should look like any
    # other file the user creates (0644 under the usual umask 022).
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name is short (``.gstmp-<pid>-<random><suffix>``, never longer than a
    long final name) and keeps the final suffixes (``.nii.gz``) so writers that choose a
    format from the extension still work. The result gets the permissions the umask gives
    a new file. On any exception the temporary file is removed and ``path`` is left
    untouched; after a kill, :func:`remove_orphans` removes it on the next run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(), suffix=suffix[:16], dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _honour_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_dir(parent: Path) -> Path:
    """A new, empty temporary folder inside ``parent`` (same naming as :func:`atomic_path`).

    The caller fills it and renames it into place (or removes it on failure); its
    permissions follow the umask.
    """
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(), dir=parent))
    _honour_umask(tmp, directory=True)
    return tmp


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_orphans(folder: str | Path) -> list[Path]:
    """Remove temporary files/folders in ``folder`` left by processes that no longer run.

    Only names made by :func:`atomic_path`/:func:`temporary_dir` are considered, and only
    when the process id in the name is not alive, so concurrent writers (``--part i/n``)
    are never disturbed. Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if not entry.name.startswith(TMP_PREFIX):
            continue
        pid_text = entry.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, *, indent: int = 2) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically (NaN is written as null)."""
    text = json.dumps(_json_safe(obj), indent=indent, allow_nan=False)
    write_text_atomic(path, text + "\n")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _json_safe(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
