"""Frozen-dataclass configurations to and from plain dicts (``config.json``, checkpoints)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(
    cls: type[T], data: Mapping[str, Any], *, what: str, tuples: tuple[str, ...] = ()
) -> T:
    """Build dataclass ``cls`` from a dict; missing keys take their defaults.

    Args:
        cls: A dataclass type.
        data: Values by field name (JSON has no tuples: fields named in ``tuples`` are
            converted from lists).
        what: Words for error messages (``"model config"``).
        tuples: Fields stored as tuples.

    Raises:
        ValueError: unknown keys, naming them and the known ones.
    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; known keys are {sorted(known)}")
    values = dict(data)
    for key in tuples:
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    return cls(**values)
