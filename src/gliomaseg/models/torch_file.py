"""``torch.load`` for files users give us: size and zip guards first, then ``weights_only=True``.

The one place gliomaseg calls ``torch.load``: checkpoints (:mod:`gliomaseg.models.checkpoint`)
and encoder weights (:mod:`gliomaseg.models.networks`) both read through :func:`load_torch_file`.
It sits apart from :mod:`gliomaseg.models.checkpoint` because that module builds networks
(it imports the factory, which imports :mod:`gliomaseg.models.networks`), and networks need
this reader: one module below both keeps the imports free of cycles.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from gliomaseg.core.errors import one_line

#: Largest torch file (and total of its zip entries) read: 2 GiB, over 100 times the
#: bundled models.
MAX_TORCH_FILE_BYTES = 2**31


class TorchFileError(ValueError):
    """A torch file that cannot be read safely.

    Attributes:
        reason: What is wrong, without the file name or a fix (callers add theirs).
        loaded: False when the guards refused the file before ``torch.load`` ran, True when
            ``torch.load`` itself failed (a truncated or foreign file).
    """

    def __init__(self, reason: str, *, loaded: bool) -> None:
        super().__init__(reason)
        self.reason, self.loaded = reason, loaded


def load_torch_file(
    path: str | Path,
    *,
    what: str = "file",
    max_bytes: int = MAX_TORCH_FILE_BYTES,
    limit_name: str = "",
) -> object:
    """What ``torch.load(path, map_location="cpu", weights_only=True)`` returns, safely.

    Args:
        path: An existing file.
        what: What the file is, for messages (``"checkpoint"``).
        max_bytes: Largest file size, and largest total of its zip entries' declared sizes.
        limit_name: The setting that holds ``max_bytes``, named in the size message.

    Raises:
        TorchFileError: too large, a corrupt zip, or unreadable by ``torch.load``.
    """
    path = Path(path)
    _check_size(path, what, max_bytes, limit_name)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types (RuntimeError, UnpicklingError, ...)
        raise TorchFileError(
            f"not a readable {what} ({type(err).__name__}: {one_line(err)[:200]})", loaded=True
        ) from None


def _check_size(path: Path, what: str, max_bytes: int, limit_name: str) -> None:
    """File size and the zip entries' declared sizes, before torch reads anything."""
    size = path.stat().st_size
    named = f" ({limit_name})" if limit_name else ""
    if size > max_bytes:
        raise TorchFileError(
            f"{what} of {size / 2**30:.1f} GiB is over the {max_bytes / 2**30:.0f} GiB "
            f"limit{named}",
            loaded=False,
        )
    if not zipfile.is_zipfile(path):
        return  # torch's legacy format (or junk): torch.load reports it
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise TorchFileError(f"not a readable {what} (corrupt zip: {err})", loaded=False) from None
    if declared > max_bytes:
        raise TorchFileError(
            f"{what} unpacks to {declared / 2**30:.1f} GiB, over the {max_bytes / 2**30:.0f} GiB "
            "limit; the file is corrupt or forged",
            loaded=False,
        )
