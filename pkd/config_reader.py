"""Strict reading of plain config data, below pkd.config: YAML text (safe, bounded, no aliases), `key=value`
overrides, finite numbers, and frozen dataclasses built from mappings with unknown keys and wrong types refused by
name (ConfigError). Nothing here knows a run's fields; pkd.config holds those and their range checks.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import stat
import typing
from pathlib import Path
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1_000_000  # a config is a few hundred bytes; refuse anything huge before parsing it


class ConfigError(ValueError):
    """A config value is missing, unknown, mistyped or out of range (message names the field)."""


# YAML 1.1 (PyYAML) reads 1e6 and 5e-3 (no dot) as strings; a numeric field accepts them as the numbers they spell.
_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
MAX_CONFIG_DEPTH = 20  # nesting of mappings/lists; a config needs 4


def safe_yaml(text: str, where: str) -> Any:
    """yaml.safe_load, refusing aliases (*name: a kilobyte of them can expand to billions of nodes) first."""
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise ConfigError(f"{where}: YAML aliases (*name) are not allowed in a config; write the values out")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"{where} is not valid YAML: {first}") from None


def check_finite(value: Any, where: str, depth: int = 0) -> None:
    """Refuse .inf / .nan anywhere in a config (and absurd nesting), naming the field, before anything runs."""
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(f"{where or 'config'}: nested more than {MAX_CONFIG_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        check_finite(item, f"{where}.{key}" if isinstance(value, dict) and where else
                     (str(key) if isinstance(value, dict) else f"{where}[{key}]"), depth + 1)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return value converted to `hint` (ints accepted for floats) or raise ConfigError naming `where`."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check_type(value, args[0], where)
    if hint in (float, int) and isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
        value = float(value)  # 1e6 as YAML 1.1 reads it
        if hint is int and value.is_integer():
            value = int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not a finite number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    raise ConfigError(f"{where}: unsupported type {hint}")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a plain mapping, rejecting unknown keys and wrong types by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; valid keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping, got {value!r}")
            kwargs[name] = from_dict(hint, value, key)
        else:
            kwargs[name] = _check_type(value, hint, key)
    return cls(**kwargs)


def get_key(data: dict, dotted: str) -> Any:
    node = data
    for part in dotted.split("."):
        node = node[part]
    return node


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` overrides (value parsed as YAML) to a plain config mapping; returns a new mapping."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. distill.alpha=0.5")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        value = safe_yaml(raw, f"override {key}: value {raw!r}")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: '{part}' is not a section")
        node[parts[-1]] = value
    return data


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping safely; one-line errors for missing, huge, unparsable or non-mapping files."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; see configs/ for examples")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO swapped in after the check never blocks
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config file {str(path)!r} is not a regular file; give a YAML file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {str(path)!r} is {info.st_size} bytes; a config must be under "
                              f"{MAX_CONFIG_BYTES}")
        data = fh.read(MAX_CONFIG_BYTES + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: it is not UTF-8 text") from None
    data = safe_yaml(text, f"config file {str(path)!r}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values, not {type(data).__name__}")
    return data
