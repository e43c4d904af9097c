"""Checks shared by the config blocks other modules validate (images, variations) and by pipelines.config:
every error names the key and, for a near miss, suggests the closest valid word."""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from root2hdf5.transforms.core.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def _closest(word, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def one_of(key: str, value, options) -> None:
    """Fail with the key, the valid values and, for a near miss, the closest one."""
    options = [str(o) for o in options]
    if value not in options:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(options)}{_closest(value, options)}")


def check_block(d, where: str, keys, required, expected: str) -> None:
    """`d` is a mapping with only `keys` and all of `required`; `expected` describes it for the error."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: expected a mapping with {expected}, got {d!r}")
    unknown = [k for k in d if k not in keys]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}{_closest(unknown[0], keys)} (keys: {', '.join(keys)})")
    missing = [k for k in required if k not in d]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")


def check_name(name, where: str, names_what: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} must be a non-empty string of letters, digits and _ . + - "
                          f"(it names {names_what})")


def named_list(items, where: str, parse, what: str) -> tuple:
    """A config list of named entries -> parse(item, 'where[i]') for each; names must be unique."""
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of {what}, got {items!r}")
    specs = tuple(parse(item, f"{where}[{i}]") for i, item in enumerate(items))
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise ConfigError(f"{where}[{i}].name: {spec.name!r} is already used by {where}[{seen[spec.name]}]")
        seen[spec.name] = i
    return specs
