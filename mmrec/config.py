"""The one config builder: a dataclass from itself, a dict, a YAML file or nothing.

:func:`build_config` is what every job, model and loop calls on its ``config`` argument (STYLE.md:
builders accept the dataclass or a dict). :func:`from_dict` maps a mapping onto a dataclass one to one:
nested dataclasses and lists of them recurse, unknown keys and wrong types raise :class:`UsageError`
with the dotted path of the field and the known ones (``optim: unknown field 'lrr'; known: lr, ...``),
and the dataclass's ``__post_init__`` does the rest. :func:`replace_config` applies overrides the same way.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mmrec.errors import UsageError

T = TypeVar("T")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


# scalar hint -> (the types a value may have, how errors name it); a bool is never an int or float here
_SCALARS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
}


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
        if isinstance(value, str) and args and args[0] is str:  # one name where a list of names goes
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {_describe(value)}")
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or hint is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise UsageError(f"{where}: expected a mapping, got {_describe(value)}")
        return dict(value)
    if hint in _SCALARS:
        accepted, expected = _SCALARS[hint]
        if not isinstance(value, accepted) or (isinstance(value, bool) and hint is not bool):
            raise UsageError(f"{where}: expected {expected}, got {_describe(value)}")
        return float(value) if hint is float else value
    return value


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from the mapping ``data``; ``where`` names it in errors (``"model"``)."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UsageError(f"{where or 'config'}: expected a mapping, got {_describe(data)}")
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # an annotation only importable under TYPE_CHECKING: no conversion
        hints = {}
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in known:
            raise UsageError(f"{where or 'config'}: unknown field {key!r}; known: {', '.join(known)}")
    kwargs = {key: _convert(value, hints.get(key, Any), f"{where}.{key}" if where else key) for key, value in data.items()}
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UsageError(f"{where or 'config'}: missing field {missing[0]!r}")
    try:
        return cls(**kwargs)
    except UsageError as err:  # __post_init__ checks: say which section
        message = str(err)
        raise UsageError(message if not where or message.startswith(where) else f"{where}: {message}") from None


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML (or, for ``.json``, JSON) file that holds a mapping; one UsageError line naming ``what``
    and the file otherwise. The one reader of config files (rank YAML, job YAML, open_clip JSON configs)."""
    import json

    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text()
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise UsageError(f"{what} {path}: not valid {kind} ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str | int], Any]:
    """``"optim.lr=0.01"`` -> ``(["optim", "lr"], 0.01)``: the value parsed as JSON when it parses
    (``[16, 8]``, ``true``, ``null``), else kept as a string; a number in the path indexes a list
    (``features.0.dim=32``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set expects KEY=VALUE with KEY a dotted config path (optim.lr=0.01), got {item!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return [int(part) if part.isdigit() else part for part in key.split(".")], value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` (a config mapping) with every ``KEY=VALUE`` of ``overrides`` (``--set``) set in place;
    the result is checked when it is built (an unknown field names its dotted path)."""
    for item in overrides:
        path, value = parse_override(item)
        node: Any = data
        for depth, part in enumerate(path[:-1]):
            where = ".".join(map(str, path[: depth + 1]))
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise UsageError(f"--set {item}: {where} is not an entry of a {len(node)}-entry list")
                node = node[part]
            elif isinstance(node, dict):
                if node.get(str(part)) is None:  # a section missing from (or null in) the YAML
                    node[str(part)] = {}
                node = node[str(part)]
            else:
                raise UsageError(f"--set {item}: {where} is a value, not a section")
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last >= len(node):
                raise UsageError(f"--set {item}: index {last} is not an entry of a {len(node)}-entry list")
            node[last] = value
        elif isinstance(node, dict):
            node[str(last)] = value
        else:
            raise UsageError(f"--set {item}: {'.'.join(map(str, path[:-1]))} is a value, not a section")
    return data


def build_config(cls: type[T], value: Any = None, what: str = "") -> T:
    """``None`` -> defaults, an instance of ``cls`` -> itself, a dict -> :func:`from_dict`, a path
    (``str`` / ``Path`` ending in ``.yaml`` / ``.yml``) -> its mapping; ``what`` names the config in errors."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, (str, Path)) and str(value).endswith((".yaml", ".yml")):
        value = read_yaml(value)
    if isinstance(value, Mapping):
        return from_dict(cls, value, what)
    raise UsageError(f"{what or 'config'} must be a {cls.__name__}, a dict or a YAML path, got {type(value).__name__}")


def replace_config(config: T, what: str = "", **overrides: Any) -> T:
    """A copy of dataclass ``config`` with ``overrides`` applied and checked like :func:`from_dict`."""
    if not overrides:
        return config
    base = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return from_dict(type(config), {**base, **overrides}, what)


def check_bounds(config: Any) -> None:
    """The one range check of config fields: a field whose ``metadata`` has ``min`` and/or ``max``
    (inclusive) must hold a number in that range (``None`` passes: "unset"; NaN fails; an ``int``
    field also refuses floats and bools); the first that does not raises one :class:`UsageError` naming it.
    Configs call it first thing in ``__post_init__``."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        low, high = f.metadata.get("min"), f.metadata.get("max")
        value = getattr(config, f.name)
        if (low is None and high is None) or value is None:
            continue
        integral = hints[f.name] is int or (typing.get_origin(hints[f.name]) in (typing.Union, types.UnionType)
                                           and int in typing.get_args(hints[f.name]))
        kind = numbers.Integral if integral else numbers.Real
        if (isinstance(value, bool) or not isinstance(value, kind) or value != value  # NaN
                or (low is not None and value < low) or (high is not None and value > high)):
            bound = (f"in [{low}, {high}]" if low is not None and high is not None
                     else f">= {low}" if low is not None else f"<= {high}")
            raise UsageError(f"{f.name} must be {'an integer ' if integral else ''}{bound}, got {value!r}")

