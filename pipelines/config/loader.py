"""Loading: YAML -> the typed dataclasses of pipelines.config.schema, every value checked against its type.

Unknown keys and invalid choices are rejected with the closest valid word; a value of the wrong type names
its key (`images[1].bins[0]: expected an integer, got 2.5`). Nothing here knows what a key means: that is
resolution's (pipelines.config.resolve).
"""
from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import math
import re
import types
import typing
from pathlib import Path

import yaml

from root2hdf5.transforms.core.errors import ConfigError

# YAML 1.1 reads `350e3` and `1.5e3` (no dot, or no exponent sign) as strings; they are obviously numbers
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
# every number ends up in a float32 output, an int64 counter or a numpy shape: larger ones only overflow there
FLOAT32_MAX = 3.4028234663852886e38
INT64_MAX = 2**63 - 1
# a config is a few levels deep and holds at most some thousands of values (file lists); YAML aliases can
# make a short file a cycle or an exponentially large tree, which would hang or crash the JSON copy
_MAX_DEPTH = 64
_MAX_VALUES = 1_000_000


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
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            value = int(value)
        if abs(value) > INT64_MAX:
            raise ConfigError(f"{where}: {value} is too large (integers must fit in 64 bits)")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return finite(float(value), where)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {tp!r}")


def finite(value: float, where: str) -> float:
    """`value` if it is finite and fits in float32 (what every number becomes in the output), else a
    ConfigError naming `where`."""
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number")
    if abs(value) > FLOAT32_MAX:
        raise ConfigError(f"{where}: {value:g} is too large (numbers are written as float32, at most 3.4e38)")
    return value


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
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    return data or {}


def plain(data, where: str = "config") -> None:
    """Check that `data` is a tree of plain values (numbers, strings, lists, mappings with scalar keys): no
    YAML alias that contains itself, no exponential tree of aliases, no dates; a ConfigError names the key."""
    count = 0

    def walk(node, where: str, parents: tuple) -> None:
        nonlocal count
        count += 1
        if count > _MAX_VALUES:
            raise ConfigError(f"{where}: the config holds more than {_MAX_VALUES:,} values (YAML aliases "
                              "repeated inside each other?)")
        if isinstance(node, (list, dict)):
            if id(node) in parents:
                raise ConfigError(f"{where}: a YAML alias refers to a block that contains it (a recursive "
                                  "structure); write the values out")
            if len(parents) >= _MAX_DEPTH:
                raise ConfigError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
            parents = (*parents, id(node))
            if isinstance(node, list):
                for i, item in enumerate(node):
                    walk(item, f"{where}[{i}]", parents)
                return
            for key, item in node.items():
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise ConfigError(f"{where}: the key {key!r} is not a name (a list or mapping used as a key)")
                walk(item, f"{key}" if where == "config" else f"{where}.{key}", parents)
        elif isinstance(node, (datetime.date, datetime.datetime)):
            raise ConfigError(f"{where}: YAML reads {node.isoformat()} as a date; quote it to give a string")
        elif not isinstance(node, (str, int, float, bool)) and node is not None:
            raise ConfigError(f"{where}: {node!r} is not a number, string, list or mapping")

    walk(data, where, ())


def with_overrides(data: dict, overrides: dict | None) -> dict:
    """A deep copy of `data` (plain types only) with dotted keys set, e.g. {"output.dir": "out/x"}."""
    plain(data)
    for dotted, value in (overrides or {}).items():
        plain(value, f"--set {dotted}")
    data = json.loads(json.dumps(data))
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data
