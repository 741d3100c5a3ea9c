"""Config dataclasses given as an instance, a plain dict or nothing (STYLE.md: builders accept both)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from mmrec.errors import UsageError

T = TypeVar("T")


def build_config(cls: type[T], value: Any, what: str) -> T:
    """``None`` -> defaults, an instance of ``cls`` -> itself, a dict -> ``cls(**value)`` after
    rejecting unknown keys; ``what`` names the config in errors (``"graph config"``)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise UsageError(f"unknown {what} field(s) {unknown}; known: {known}")
        return cls(**value)
    raise UsageError(f"{what} must be a {cls.__name__} or a dict, got {type(value).__name__}")
