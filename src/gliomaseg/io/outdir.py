"""Where gliomaseg may write, and which files it may replace.

The user's data are read-only to gliomaseg. Every command that writes an output folder
goes through :class:`OutputFolder`, which

* refuses (one line, exit 2) an output folder that is a file, is an input case folder, lies
  inside one, or holds one (``prepare DATA/cases -o DATA`` would otherwise write over the
  patients' folders);
* keeps a manifest, ``.gliomaseg-manifest.json``, of every file and folder it wrote there:
  an existing file that is not in the manifest is never replaced, even with ``--overwrite``;
* removes temporary files left by killed runs (:func:`gliomaseg.io.atomic.remove_orphans`);
* turns an unwritable folder (read-only, permissions) into a one-line error up front.

The manifest is updated under an advisory lock, so ``segment --part i/n`` processes can
share one output folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from gliomaseg.core.errors import InputError, failure_message
from gliomaseg.io.atomic import remove_orphans, write_json_atomic

MANIFEST_NAME = ".gliomaseg-manifest.json"


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_location(
    output: str | Path,
    case_paths: Iterable[str | Path] = (),
    *,
    data_paths: Iterable[str | Path] = (),
    flag: str = "-o",
) -> None:
    """Refuse an output location that would mix outputs into input data.

    Args:
        output: The output folder (need not exist yet).
        case_paths: Each input case's folder, or its file for single-file layouts: the
            output may not equal, hold or lie inside one.
        data_paths: Other inputs (a predictions folder, a dataset): the output may not equal
            or hold one, but may lie inside (``evaluate --pred OUT -o OUT/eval``).
        flag: How the user passed ``output`` (for the message).

    Raises:
        InputError: ``output`` is an existing file, equals or lies inside an input case
            folder, or holds an input case/file.
    """
    out = _resolved(Path(output))
    if out.exists() and not out.is_dir():
        raise InputError(f"{output}: {flag} names an existing file; give a folder")
    for raw in data_paths:
        data = _resolved(Path(raw))
        if _is_within(data, out):
            raise InputError(
                f"{output}: {flag} is or holds the input {raw}; "
                "choose an output folder outside the inputs"
            )
    for raw in case_paths:
        case = _resolved(Path(raw))
        if case.is_dir() and _is_within(out, case):
            raise InputError(
                f"{output}: {flag} is inside the input case folder {raw}; "
                "write outputs to a separate folder (e.g. beside the dataset)"
            )
        if _is_within(case, out):
            raise InputError(
                f"{output}: {flag} holds the input {raw}; gliomaseg never writes over input "
                "data: choose an output folder outside the inputs"
            )


class OutputFolder:
    """An output folder and the manifest of what gliomaseg wrote in it.

    Args:
        root: The folder (created when the first output is recorded).
        overwrite: Whether files gliomaseg wrote earlier may be replaced.

    Raises:
        InputError: ``root`` is a file, or cannot be created or written.
    """

    def __init__(self, root: str | Path, *, overwrite: bool = False) -> None:
        self.root = Path(root)
        self.overwrite = overwrite
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{root}: exists and is a file; give a folder for the outputs")
        # Nothing is created until the first output is recorded (no empty folder is left
        # behind when every case fails), but an unwritable place is reported now.
        existing = next(p for p in (self.root, *self.root.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise InputError(f"{root}: {existing} is a file, not a folder; choose another output")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(
                f"{root}: {existing} is not writable; fix its permissions or choose another "
                "output folder"
            )
        remove_orphans(self.root)

    # ------------------------------------------------------------------ manifest

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def written(self) -> set[str]:
        """Relative paths (POSIX) gliomaseg wrote in this folder."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as err:
            raise InputError(
                f"{self.manifest_path}: unreadable manifest ({err}); remove it only if "
                "everything in the folder came from gliomaseg"
            ) from None
        return {str(p) for p in data.get("files", [])}

    def _rel(self, path: str | Path) -> str:
        """``path`` relative to the folder; accepts ``root / name`` or a bare relative name."""
        p = Path(path)
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            if p.is_absolute():
                raise ValueError(f"{p} is not inside the output folder {self.root}") from None
            return p.as_posix()

    def owns(self, *paths: str | Path) -> bool:
        """Whether every one of ``paths`` (inside the folder) was written by gliomaseg."""
        ours = self.written()  # one read of the manifest for all of them
        return all(self._rel(p) in ours for p in paths)

    def check_owned(self, *paths: str | Path) -> None:
        """Raise if any existing path was not written by gliomaseg (may be replaced: ours).

        Raises:
            InputError: naming the first file that is not gliomaseg's.
        """
        ours = self.written()
        for path in paths:
            full = self.root / self._rel(path)
            if (full.exists() or full.is_symlink()) and self._rel(path) not in ours:
                raise InputError(
                    f"{full}: exists and was not written by gliomaseg; it is left alone: "
                    "move it or choose another output folder"
                )

    def check_writable(self, *paths: str | Path) -> None:
        """Like :meth:`check_owned`, and an existing file of ours needs ``overwrite``.

        Raises:
            InputError: naming the first file that may not be replaced.
        """
        self.check_owned(*paths)
        if not self.overwrite:
            for path in paths:
                full = self.root / self._rel(path)
                if full.exists():
                    raise InputError(f"{full}: exists; pass --overwrite to replace it")

    def record(self, *paths: str | Path) -> None:
        """Add ``paths`` (files or folders inside the folder) to the manifest."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(
                f"{self.root}: cannot create the output folder ({failure_message(err)})"
            ) from None
        with self._locked():
            files = self.written() | {self._rel(p) for p in paths}
            write_json_atomic(self.manifest_path, {"format": 1, "files": sorted(files)})

    def claim(self, *paths: str | Path) -> list[Path]:
        """:meth:`check_owned` then :meth:`record`: call before writing ``paths``.

        Returns:
            The full paths, in order.
        """
        self.check_owned(*paths)
        self.record(*paths)
        return [self.root / self._rel(p) for p in paths]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The folder itself is the lock (flock on its descriptor): no lock file to leave.
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
