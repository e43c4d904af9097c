"""Loading: YAML -> the typed dataclasses of pipelines.config.schema, every value checked against its type.

Unknown keys and invalid choices are rejected with the closest valid word; a value of the wrong type names
its key (`images[1].bins[0]: expected an integer, got 2.5`). Nothing here knows what a key means: that is
resolution's (pipelines.config.resolve).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from pathlib import Path

import yaml

from root2hdf5.transforms.core.errors import ConfigError

# YAML 1.1 reads `350e3` and `1.5e3` (no dot, or no exponent sign) as strings; they are obviously numbers
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def closest(word, options) -> str:
    """'; did you mean X?' for a near miss among `options`, else ''."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def one_of(where: str, value, options) -> None:
    """Fail with the key, the valid values and, for a near miss, the closest one."""
    options = [str(o) for o in options]
    if value not in options:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(options)}{closest(value, options)}")


def unique_names(items, where: str) -> None:
    """Entries of a named list (images, variations) must have different names: each names an output."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in seen:
            raise ConfigError(f"{where}[{i}].name: {item.name!r} is already used by {where}[{seen[item.name]}]")
        seen[item.name] = i


def _choices(tp) -> tuple | None:
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None


def _pick_dataclass(value: dict, options: list):
    """The dataclass of a union a mapping is meant as: the first whose fields hold all its keys, else the one
    sharing most keys (so the error names the key that is wrong)."""
    keys = set(value)
    names = [{f.name for f in dataclasses.fields(tp)} for tp in options]
    for tp, fields in zip(options, names):
        if keys <= fields:
            return tp
    return max(zip(options, names), key=lambda item: len(keys & item[1]))[0]


def _union(value, tp, where: str):
    options = typing.get_args(tp)
    if value is None and type(None) in options:
        return None
    inner = [t for t in options if t is not type(None)]
    lists = [t for t in inner if typing.get_origin(t) is list]
    if isinstance(value, list) and lists:  # e.g. `float | list[int]`: a list picks the list type
        return convert(value, lists[0], where)
    classes = [t for t in inner if dataclasses.is_dataclass(t)]
    if isinstance(value, dict) and classes:  # e.g. a size: a number, a {map: ...} or {eta: ..., phi: ...}
        return convert(value, _pick_dataclass(value, classes), where)
    plain = [t for t in inner if t not in lists and t not in classes]
    return convert(value, plain[0] if plain else inner[0], where)


def _scalar(value, tp, where: str):
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT.match(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {tp!r}")


def convert(value, tp, where: str):
    """`value` as type `tp` (a schema annotation), or a ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(value, tp, where)
    choices = _choices(tp)
    if choices is not None:
        one_of(where, value, choices)
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and (item is str or _choices(item)):
            value = [str(value)]  # a single name where a list is expected
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {convert(k, key_t, where): convert(v, val_t, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    return _scalar(value, tp, where)


def build(cls, data, where: str = ""):
    """An instance of the schema dataclass `cls` from a mapping; `where` is its key path for messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            hint = closest(key, names) or f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{path}'{hint}")
        kwargs[key] = convert(value, hints[key], path)
    for f in dataclasses.fields(cls):
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key '{where + '.' if where else ''}{f.name}'")
    return cls(**kwargs)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    return data or {}


def with_overrides(data: dict, overrides: dict | None) -> dict:
    """A deep copy of `data` (plain types only) with dotted keys set, e.g. {"output.dir": "out/x"}."""
    data = json.loads(json.dumps(data))
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data
