"""How a case is described before it is read: :class:`CaseRef` and :class:`LayoutConfig`.

:mod:`gliomaseg.io.layouts` finds cases and describes each one with a :class:`CaseRef` (names
and headers only); :mod:`gliomaseg.io.readers` loads its voxels. A :class:`LayoutConfig`
maps arbitrary file names to roles for folders no built-in naming convention covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from gliomaseg.core.errors import InputError, one_line
from gliomaseg.core.labels import get_scheme

LAYOUT_CONFIG_NAME = "gliomaseg-layout.json"


@dataclass(frozen=True)
class LayoutConfig:
    """Maps arbitrary file names to roles, for folders no built-in convention covers.

    Stored as JSON (``gliomaseg-layout.json`` in the case folder, or given with
    ``--layout-config``)::

        {"modalities": {"flair": "images/*_fla_bet.nii.gz", "t1": "images/*_t1_bet.nii.gz"},
         "label": "fusion/mav.nii.gz", "label_scheme": "brats2020", "brain_mask": null}

    Patterns are globs relative to the case folder and must match exactly one file inside
    it: an absolute pattern or one with a ``..`` part is refused when the config is loaded,
    and a match that resolves (following symlinks) outside the case folder is refused when
    the case is discovered.

    Attributes:
        source: The JSON file the config came from (named in error messages), if any.
    """

    modalities: dict[str, str]
    label: str | None = None
    label_scheme: str | None = None
    brain_mask: str | None = None
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = self.source or "layout config"
        for role, pattern in self.patterns().items():
            _check_pattern(where, role, pattern)

    def patterns(self) -> dict[str, str]:
        """Role (modality, ``label``, ``brain_mask``) -> glob, for the roles given."""
        extra = {"label": self.label, "brain_mask": self.brain_mask}
        return {**self.modalities, **{k: v for k, v in extra.items() if v is not None}}

    @classmethod
    def load(cls, path: Path) -> LayoutConfig:
        """Read and validate a layout config file.

        Raises:
            InputError: unreadable JSON, missing or unknown keys, an unknown label scheme, or
                a pattern that is not a glob inside the case folder.
        """
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read layout config ({err}); fix the JSON") from None
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("modalities"), dict)
            or not raw["modalities"]
        ):
            raise InputError(f"{path}: layout config needs a non-empty 'modalities' mapping")
        unknown = set(raw) - {"modalities", "label", "label_scheme", "brain_mask"}
        if unknown:
            raise InputError(f"{path}: unknown layout config key(s) {sorted(unknown)}")
        if raw.get("label_scheme"):
            try:
                get_scheme(raw["label_scheme"])
            except ValueError as err:
                raise InputError(f"{path}: {one_line(err)}") from None
        return cls(
            modalities={str(k): v for k, v in raw["modalities"].items()},
            label=raw.get("label"),
            label_scheme=raw.get("label_scheme"),
            brain_mask=raw.get("brain_mask"),
            source=path,
        )


def _check_pattern(where: Path | str, role: str, pattern: object) -> None:
    """Refuse a config pattern that is not a relative glob staying inside the case folder."""
    fix = 'use a glob relative to the case folder, e.g. "images/*_flair.nii.gz"'
    if not isinstance(pattern, str) or not pattern.strip():
        raise InputError(f"{where}: pattern for {role} is {pattern!r}, not a file glob; {fix}")
    parts = PureWindowsPath(pattern).parts  # splits on both / and \\
    if PurePosixPath(pattern).is_absolute() or PureWindowsPath(pattern).anchor or ".." in parts:
        raise InputError(
            f"{where}: pattern '{pattern}' for {role} points outside the case folder (absolute "
            f"or '..'); {fix}, and copy or move the file into the case folder"
        )


@dataclass(frozen=True)
class CaseRef:
    """Where one case's files are, found from names and headers only.

    Attributes:
        case_id: Case identifier.
        layout: Layout name (see module docstring).
        path: Case folder, or the file for single-file layouts.
        images: Canonical modality -> file (per-modality layouts).
        label: Segmentation file, if any.
        scheme: Label scheme name implied by the layout (None: guess from the values).
        brain_mask: Brain-mask file, if the layout ships one.
        channels: Modality of each channel of a 4D file (MSD).
        patient: Patient identifier for patient-level splits.
    """

    case_id: str
    layout: str
    path: Path
    images: dict[str, Path] = field(default_factory=dict)
    label: Path | None = None
    scheme: str | None = None
    brain_mask: Path | None = None
    channels: tuple[str, ...] = ()
    patient: str = ""
