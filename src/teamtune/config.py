"""Typed configs: dataclasses read from YAML with strict validation and `a.b=value` overrides."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that does not fit its dataclass; the message names the file and key."""


def read_yaml(path: str | Path) -> Any:
    """A YAML file's data; a ConfigError in one line (where and what) if it is not valid YAML or not text."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None


def at_least(obj: Any, minimum: int, *names: str) -> None:
    """ValueError naming the first of `names` whose value on `obj` is below `minimum` (for validate methods)."""
    for name in names:
        if getattr(obj, name) < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {getattr(obj, name)}")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from a plain dict, refusing unknown keys and wrong types."""
    return _convert(cls, data, where)


PACKAGED = Path(__file__).resolve().parent / "configs"  # the configs teamtune ships (`teamtune configs`)


def packaged_configs() -> list[Path]:
    return sorted(PACKAGED.glob("*.yaml"))


def resolve_config(path: str | Path) -> Path:
    """A config file; else, for a name teamtune ships (`mlpo_gsm8k`, `configs/mlpo_gsm8k.yaml`), its copy."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: a config is a YAML file")
    name = path.name if path.suffix else f"{path.name}.yaml"
    if str(path.parent) in (".", "configs") and (PACKAGED / name).is_file():
        return PACKAGED / name
    shipped = ", ".join(p.stem for p in packaged_configs())
    raise ConfigError(f"config file not found: {path} (configs teamtune ships: {shipped})")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Read `cls` from a YAML file (or defaults), then apply `key.sub=value` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = resolve_config(path)
        where = str(path)
        data = read_yaml(path)
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    for item in overrides or []:
        apply_override(data, item)
    return from_dict(cls, data, where)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` inside nested dict `data`; the value is parsed as YAML (so 3, true, [a, b] work)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (for example task.limit=20)")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        node[parts[-1]] = raw


def to_dict(obj: Any) -> Any:
    """A dataclass as plain YAML/JSON-ready data."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def save_config(obj: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(str, typing.get_args(tp)))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(names))})")
        kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            obj = tp(**kwargs)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None
        check = getattr(obj, "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from None
        return obj
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_convert(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, arg = typing.get_args(tp) or (str, Any)
        return {k: _convert(arg, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")
