"""Typed configs: frozen dataclasses loaded from YAML with strict checking.

Every config in this project is a frozen dataclass whose fields are declared with `opt(default,
"one-line help")`. `load_config(Cls, path, overrides)` reads YAML, rejects unknown keys (naming the
key, the file and the valid keys), checks types (naming the field), and applies command-line
overrides of the form `section.field=value` (the value is parsed as YAML, so `1e-4`, `true`, `[1, 2]`
work). The resolved config is plain data (`config_to_dict`) and is what every run saves.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class ConfigError(ValueError):
    """A config file or override is wrong; the message says where and how."""


def opt(default: Any, help: str):
    """A config field with a default and a one-line description (shown by `describe_config`)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults so configs stay immutable")
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, where: str):
    """Check `value` against annotation `tp`; return the (possibly converted) value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _from_mapping(tp, value, where)
    if origin in (tuple, list) or tp in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if not args:
            return tuple(value)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected bool (true/false), got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads "1e-4" (no dot) as a string; accept numeric strings for floats.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{where}: expected float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected str, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _from_mapping(cls, data: Mapping, where: str):
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} for {cls.__name__}; valid keys: {', '.join(sorted(names))}")
    kwargs = {}
    for k, v in data.items():
        kwargs[k] = _coerce(v, hints[k], f"{where}: field {k!r}" if ":" not in where else f"{where}.{k}")
    return cls(**kwargs)


def config_from_dict(cls, data: Mapping | None, source: str = "<dict>"):
    return _from_mapping(cls, data or {}, source)


def config_to_dict(cfg) -> dict:
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v
    return conv(cfg)


def _set_path(d: dict, path: list[str], value):
    for p in path[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            d[p] = nxt
        d = nxt
    d[path[-1]] = value


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.lr=1e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({_yaml_problem(e)}); "
                          f"quote it, e.g. {key}='\"...\"'") from None
    return key.split("."), value


def _yaml_problem(e: yaml.YAMLError) -> str:
    # PyYAML's str() spans several lines (the offending text with a caret); keep one line with
    # the position, 1-based as editors count.
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def read_yaml_file(path: Path):
    """A YAML file's content; a missing, unreadable or malformed file is a ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" if not path.exists()
                          else f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None


def load_config(cls, path: str | Path | None = None, overrides: Iterable[str] = ()):
    """Defaults <- YAML file <- overrides; returns a frozen instance of `cls`."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        loaded = read_yaml_file(p)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
        source = str(p)
    # Validate the file alone first so errors name the file, then layer the overrides.
    config_from_dict(cls, data, source)
    for text in overrides:
        keys, value = parse_override(text)
        _check_override_path(cls, keys, text)
        _set_path(data, keys, value)
    return config_from_dict(cls, data, source if not overrides else f"{source} (with --set overrides)")


def _check_override_path(cls, keys: list[str], text: str):
    tp = cls
    for i, k in enumerate(keys):
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"override {text!r}: {'.'.join(keys[:i])} is not a section")
        names = [f.name for f in dataclasses.fields(tp)]
        if k not in names:
            raise ConfigError(f"override {text!r}: unknown key {k!r} for {tp.__name__}; "
                              f"valid keys: {', '.join(sorted(names))}")
        tp = _hints(tp)[k]


def save_config(cfg, path: str | Path):
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def describe_config(cls, prefix: str = "") -> list[str]:
    """One line per field: dotted name, default and help text (for --help and docs)."""
    lines = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(tp):
            lines.extend(describe_config(tp, f"{prefix}{f.name}."))
        else:
            lines.append(f"{prefix}{f.name} = {default!r}  # {f.metadata.get('help', '')}")
    return lines
