"""Strict config sections as frozen dataclasses, validated from their type hints (no pydantic).

The agent's config and the requirement profiles are read by the agent, whose resident
memory is a goal (docs/performance.md, "Agent footprint": pydantic costs it ~9 MiB);
the collector's own config stays on pydantic (preflight.configfile). Same rules as
there: unknown keys are errors, every error names its key path (`egress.targets.0.path`)
and the file, and a value is converted the way the pydantic models did (a duration like
`1m30s`, a path from text, a list into a tuple, a numeric string into a number), so a
config file reads the same before and after.

A section subclasses `Strict` and is a `@dataclass(frozen=True)`; a field's constraints
are `Annotated[T, Check(...)]`; a section-wide rule is a `_validate` method raising
ValueError (or `Invalid(key, message)` for one field). Construction from Python
(`AgentConfig(node_name="x")`, `dataclasses.replace`) validates exactly like loading.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import yaml

Loc = tuple[str | int, ...]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(Exception):
    """A configuration problem, with the file and key in the message."""


def parse_duration(value: Any) -> float:
    """Seconds from `1m30s`-style text or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"expected a duration like 30s, 1m30s or 500ms, got {value!r}")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f"expected a duration like 30s, got {value!r}")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


@dataclasses.dataclass(frozen=True)
class Check:
    """Constraints on one value (as pydantic's Field arguments of the same names)."""

    min_length: int | None = None
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    pattern: str | None = None

    def apply(self, value: Any) -> None:
        if self.min_length is not None and len(value) < self.min_length:
            raise ValueError(f"should have at least {self.min_length} item(s) or character(s)")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(f"should have at most {self.max_length} item(s) or character(s)")
        if self.ge is not None and value < self.ge:
            raise ValueError(f"should be greater than or equal to {self.ge:g}")
        if self.le is not None and value > self.le:
            raise ValueError(f"should be less than or equal to {self.le:g}")
        if self.gt is not None and value <= self.gt:
            raise ValueError(f"should be greater than {self.gt:g}")
        if self.pattern is not None and not re.search(self.pattern, value):
            raise ValueError(f"should match pattern '{self.pattern}'")


class _DurationMarker:
    def __repr__(self) -> str:
        return "Duration"


DURATION = _DurationMarker()
# Seconds, written `30s`, `1m30s`, `500ms` or a bare number; always positive.
Duration = typing.Annotated[float, DURATION]


class Invalid(ValueError):
    """A section rule's complaint about one of its fields."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class StrictError(ValueError):
    """Every problem found, each with its key path."""

    def __init__(self, errors: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in errors))
        self.errors = errors

    def prefixed(self, loc: Loc) -> StrictError:
        return StrictError([((*loc, *sub), msg) for sub, msg in self.errors])


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _kind(value: Any) -> str:
    return type(value).__name__


def _scalar(tp: type, value: Any) -> Any:
    """bool, int, float, str, Path: converted as pydantic's lax mode did."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"should be a valid boolean, got {_kind(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise ValueError(f"should be a valid integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"should be a valid number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"should be a valid string, got {_kind(value)}")
    if tp is Path:
        if isinstance(value, Path):
            return value
        if isinstance(value, str):
            return Path(value)
        raise ValueError(f"should be a path, got {_kind(value)}")
    raise TypeError(f"strict: unsupported type {tp!r}")


def convert(tp: Any, value: Any, loc: Loc = ()) -> Any:
    """`value` as type `tp`, or StrictError naming the key path of every problem."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    try:
        if origin is typing.Annotated:
            base, *extras = args
            if any(e is DURATION for e in extras):
                value = parse_duration(value)
            value = convert(base, value, loc)
            for extra in extras:
                if isinstance(extra, Check):
                    extra.apply(value)
            return value
        if origin is typing.Union or origin is types.UnionType:
            if value is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            if len(options) != 1:
                raise TypeError(f"strict: only `X | None` unions, not {tp!r}")
            return convert(options[0], value, loc)
        if origin is typing.Literal:
            for allowed in args:
                if value == allowed and type(value) is type(allowed):
                    return allowed
            choices = " or ".join(repr(a) for a in args)
            raise ValueError(f"should be {choices}, got {value!r}")
        if origin is tuple:
            if not isinstance(value, list | tuple):
                raise ValueError(f"should be a list, got {_kind(value)}")
            item = args[0]
            errors: list[tuple[Loc, str]] = []
            out = []
            for i, element in enumerate(value):
                try:
                    out.append(convert(item, element, (*loc, i)))
                except StrictError as error:
                    errors.extend(error.errors)
            if errors:
                raise StrictError(errors)
            return tuple(out)
        if origin is dict:
            if not isinstance(value, Mapping):
                raise ValueError(f"should be a mapping, got {_kind(value)}")
            key_type, value_type = args
            errors = []
            mapping = {}
            for k, v in value.items():
                try:
                    mapping[convert(key_type, k, (*loc, str(k)))] = convert(
                        value_type, v, (*loc, str(k))
                    )
                except StrictError as error:
                    errors.extend(error.errors)
            if errors:
                raise StrictError(errors)
            return mapping
        if isinstance(tp, type) and issubclass(tp, Strict):
            if isinstance(value, tp):
                return value
            if not isinstance(value, Mapping):
                raise ValueError(f"should be a mapping, got {_kind(value)}")
            try:
                return tp.from_mapping(value)
            except StrictError as error:
                raise error.prefixed(loc) from None
        if isinstance(tp, type):
            return _scalar(tp, value)
        raise TypeError(f"strict: unsupported type {tp!r}")
    except StrictError:
        raise
    except ValueError as error:
        raise StrictError([(loc, str(error))]) from None


_HINTS: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """name -> resolved type hint (Annotated kept) of every dataclass field of `cls`."""
    hints = _HINTS.get(cls)
    if hints is None:
        resolved = typing.get_type_hints(cls, include_extras=True)
        hints = {f.name: resolved[f.name] for f in dataclasses.fields(cls)}
        _HINTS[cls] = hints
    return hints


class Strict:
    """Base of a strict section; subclasses are `@dataclass(frozen=True)`."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def __post_init__(self) -> None:
        errors: list[tuple[Loc, str]] = []
        for name, tp in field_types(type(self)).items():
            try:
                object.__setattr__(self, name, convert(tp, getattr(self, name), (name,)))
            except StrictError as error:
                errors.extend(error.errors)
        if not errors:
            try:
                self._validate()
            except Invalid as error:
                errors.append(((error.key,), str(error)))
            except ValueError as error:
                errors.append(((), str(error)))
        if errors:
            raise StrictError(errors)

    def _validate(self) -> None:
        """Rules across fields; raise ValueError or Invalid."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """A section from parsed YAML: unknown and missing keys are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        errors: list[tuple[Loc, str]] = [
            ((str(key),), "unknown key") for key in data if key not in fields
        ]
        for name, f in fields.items():
            missing = f.default is dataclasses.MISSING
            if missing and f.default_factory is dataclasses.MISSING and name not in data:
                errors.append(((name,), "Field required"))
        if any(msg == "Field required" for _loc, msg in errors):
            raise StrictError(errors)
        try:
            section = cls(**{k: v for k, v in data.items() if k in fields})
        except StrictError as error:
            errors.extend(error.errors)  # unknown keys first, then the values
        if errors:
            raise StrictError(errors)
        return section

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, validated again."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


StrictT = TypeVar("StrictT", bound=Strict)


def describe(error: StrictError, source: str) -> str:
    return "\n".join(f"{source}: key '{_dotted(loc)}': {msg}" for loc, msg in error.errors)


def top_level_mapping(data: Any, source: str) -> dict[Any, Any]:
    """Parsed YAML as the mapping a config file must be (an empty file is `{}`)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return data


def parse_mapping(model: type[StrictT], data: Any, source: str) -> StrictT:
    """Validates already-parsed YAML against `model`, naming `source` in errors."""
    mapping = top_level_mapping(data, source)
    try:
        return model.from_mapping(mapping)
    except StrictError as error:
        raise ConfigError(describe(error, source)) from None


def read_yaml(path: Path) -> Any:
    """Parsed YAML of `path`; ConfigError (naming the file, the line for bad bytes)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset "
            f"{error.start}); config files must be UTF-8"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def load_yaml_file(model: type[StrictT], path: Path) -> StrictT:
    return parse_mapping(model, read_yaml(path), str(path))
