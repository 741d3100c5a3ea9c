"""Config dataclasses from plain dicts (YAML), failing with one line that names the field.

:func:`from_dict` maps a mapping onto a dataclass one to one: nested dataclasses and lists of them
recurse, unknown keys and wrong types raise :class:`UsageError` with the dotted path of the field
(``optim.lr: expected a number, got 'fast'``), and the dataclass's ``__post_init__`` does the rest.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, TypeVar

from mmrec.errors import UsageError

T = TypeVar("T")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except UsageError as err:
                errors.append(str(err))
        raise UsageError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {_describe(value)}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {_describe(value)}")
        item = args[0] if args else Any
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise UsageError(f"{where}: expected a mapping, got {_describe(value)}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {_describe(value)}")
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from the mapping ``data``; ``where`` names it in errors (``"model"``)."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UsageError(f"{where or 'config'}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in known:
            raise UsageError(f"{where or 'config'}: unknown field {key!r}; known: {', '.join(known)}")
    kwargs = {key: _convert(value, hints[key], f"{where}.{key}" if where else key) for key, value in data.items()}
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UsageError(f"{where or 'config'}: missing field {missing[0]!r}")
    try:
        return cls(**kwargs)
    except UsageError as err:  # __post_init__ checks: say which section
        message = str(err)
        raise UsageError(message if not where or message.startswith(where) else f"{where}: {message}") from None
