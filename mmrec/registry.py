"""One small generic registry for everything swappable (encoders, quantizers, index kinds, rankers).

``@REG.register("name")`` declares a component; ``REG.build("name", **kw)`` builds it; objects that
are not names pass through unchanged. Heavy backends register lazily as ``"module:attr"`` strings and
are imported on first lookup, so ``import mmrec`` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mmrec.errors import UsageError


class Registry:
    """A named table of builders (classes or functions)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any] | str] = {}

    def register(self, name: str, target: Callable[..., Any] | str | None = None):
        """Register ``target`` under ``name``; used bare as a decorator when ``target`` is None.

        ``target`` may be a ``"module:attr"`` string, imported on first use.
        """
        if name in self._entries:
            raise UsageError(f"{self.kind} {name!r} is already registered")
        if target is not None:
            self._entries[name] = target
            return target

        def decorator(obj: Callable[..., Any]) -> Callable[..., Any]:
            self.register(name, obj)
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name``; an error listing the known names otherwise."""
        try:
            target = self._entries[name]
        except KeyError:
            raise UsageError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}"
            ) from None
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target

    def build(self, name_or_obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Build the component named ``name_or_obj``; a non-string passes through unchanged."""
        if not isinstance(name_or_obj, str):
            return name_or_obj
        return self.get(name_or_obj)(*args, **kwargs)
