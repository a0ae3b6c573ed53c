"""Reading settings dataclasses from ``S3_*`` environment variables.

Settings come in sections (:class:`Section`): one frozen dataclass per component, which is all that
component is given. A section's field is read from ``S3_<ENV_PREFIX><FIELD>`` in capitals (``Env``
names another variable), a field whose type is itself a section is read as that section, and every
value is parsed by its declared type, so a setting is declared once, in its section: its name,
type, default and bounds. The variable without ``S3_``, in small letters, is the setting's *name*
(``lease_s``, ``http_port``), which :func:`changed` takes. An unset or empty variable keeps the
default. A value that does not parse raises :class:`SettingsError` naming the variable.

Types: ``str``, ``int`` (at least ``AtLeast``, else 0), ``float`` (finite and > 0), ``bool``
(``on`` / ``off``), ``Path``, a ``Literal`` of strings (one of them), ``tuple[str, ...]``
(comma-separated; ``Networks``: each an address or CIDR network), and any class with a
``parse(name, raw)`` constructor (``RateLimit``); each may be ``| None``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

PREFIX = "S3_"

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the variable and what it accepts."""


@dataclass(frozen=True)
class Env:
    """The variable a field is read from, where it is not ``S3_<FIELD>``."""

    name: str


@dataclass(frozen=True)
class AtLeast:
    """The least value an integer setting accepts."""

    minimum: int


@dataclass(frozen=True)
class Networks:
    """Each entry of a comma-separated setting must be an address or a CIDR network."""


@dataclass(frozen=True)
class Upper:
    """The value is upper-cased (log levels)."""


class Section:
    """Base of a settings section: a frozen dataclass whose fields are read from
    ``S3_<ENV_PREFIX><FIELD>``; the prefix names the component (``http_``) or is empty where the
    fields' own names already say it (``lease_s``)."""

    ENV_PREFIX: ClassVar[str] = ""

    def check(self) -> None:
        """What the field types alone cannot say; nothing unless the section says otherwise."""


@dataclass(frozen=True)
class Leaf:
    """One setting: where it sits (``("queue", "lease_s")``), its variable and its declared type."""

    path: tuple[str, ...]
    variable: str
    hint: Any
    owner: type[Any]
    """The dataclass that declares it (its attribute docstring is the setting's description)."""

    @property
    def name(self) -> str:
        """The setting's name: its variable without ``S3_``, in small letters."""
        return self.variable.removeprefix(PREFIX).lower()

    def value_in(self, settings: Any) -> Any:
        """This setting's value in ``settings`` (an instance of the class it was found in)."""
        return functools.reduce(getattr, self.path, settings)


def section_type(hint: Any) -> type[Section] | None:
    return hint if isinstance(hint, type) and issubclass(hint, Section) else None


def env_name(field: dataclasses.Field[Any], hints: Mapping[str, Any], prefix: str = "") -> str:
    marks = _marks(hints[field.name])
    named = next((m for m in marks if isinstance(m, Env)), None)
    return named.name if named is not None else PREFIX + (prefix + field.name).upper()


def env_names(cls: type[Any]) -> dict[str, str]:
    """Field name -> the variable it is read from, for the settings ``cls`` declares itself."""
    hints = typing.get_type_hints(cls, include_extras=True)
    prefix = getattr(cls, "ENV_PREFIX", "")
    return {f.name: env_name(f, hints, prefix) for f in dataclasses.fields(cls) if section_type(hints[f.name]) is None}


def leaves(cls: type[Any], path: tuple[str, ...] = ()) -> list[Leaf]:
    """Every setting of ``cls`` and of the sections in it, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    prefix = getattr(cls, "ENV_PREFIX", "")
    found: list[Leaf] = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        section = section_type(hint)
        if section is not None:
            found += leaves(section, (*path, field.name))
        else:
            found.append(Leaf((*path, field.name), env_name(field, hints, prefix), hint, cls))
    return found


def read(cls: Callable[..., T], env: Mapping[str, str]) -> T:
    """``cls(**values)`` for every field whose variable is set (the rest keep their defaults), and
    each section field read the same way from its own variables."""
    hints = typing.get_type_hints(cls, include_extras=True)
    prefix = getattr(cls, "ENV_PREFIX", "")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        section = section_type(hints[field.name])
        if section is not None:
            values[field.name] = read(section, env)
            continue
        name = env_name(field, hints, prefix)
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        values[field.name] = _parse(name, raw, hints[field.name])
    return cls(**values)


def changed(settings: T, **values: Any) -> T:
    """``settings`` with the named settings (by :attr:`Leaf.name`: ``lease_s=1.0``) set to these
    values, wherever their sections sit; an unknown name raises ``TypeError``."""
    where = {leaf.name: leaf.path for leaf in leaves(type(settings))}
    unknown = sorted(set(values) - set(where))
    if unknown:
        raise TypeError(f"no such setting: {', '.join(unknown)}")
    for name, value in values.items():
        settings = _replaced(settings, where[name], value)
    return settings


def spelled(value: Any) -> str:
    """A setting's value as its variable spells it: what :func:`read` reads back as that value."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def as_env(settings: Any) -> dict[str, str]:
    """The variables that make :func:`read` build ``settings`` again (unset ones left out), for a
    child process that must run with the same settings."""
    found = {}
    for leaf in leaves(type(settings)):
        value = leaf.value_in(settings)
        if value is not None:
            found[leaf.variable] = spelled(value)
    return found


def _replaced(obj: T, path: tuple[str, ...], value: Any) -> T:
    head, *rest = path
    inner = _replaced(getattr(obj, head), tuple(rest), value) if rest else value
    return dataclasses.replace(obj, **{head: inner})  # type: ignore[type-var]


def _marks(hint: Any) -> tuple[Any, ...]:
    return tuple(hint.__metadata__) if typing.get_origin(hint) is typing.Annotated else ()


def unwrap(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """A field's value type (``X`` for ``X | None``) and its marks (``AtLeast``, ``Networks`` ...)."""
    marks = _marks(hint)
    kind = typing.get_args(hint)[0] if marks else hint
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None: the value is an X
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind, marks


def _parse(name: str, raw: str, hint: Any) -> Any:
    kind, marks = unwrap(hint)
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        if raw not in choices:
            spelled = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
            raise SettingsError(f"{name} must be {spelled}, got {raw!r}")
        return raw
    if kind is bool:
        if raw.lower() not in ("on", "off"):
            raise SettingsError(f"{name} must be 'on' or 'off', got {raw!r}")
        return raw.lower() == "on"
    if kind is int:
        return _integer(name, raw, next((m.minimum for m in marks if isinstance(m, AtLeast)), 0))
    if kind is float:
        return _number(name, raw)
    if kind is Path:
        return Path(raw)
    if kind is str:
        return raw.upper() if any(isinstance(m, Upper) for m in marks) else raw
    if typing.get_origin(kind) is tuple:
        entries = tuple(part.strip() for part in raw.split(",") if part.strip())
        if any(isinstance(m, Networks) for m in marks):
            for entry in entries:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as err:
                    raise SettingsError(f"{name}: {entry!r} is not an address or network") from err
        return entries
    parse = getattr(kind, "parse", None)
    if parse is None:
        raise TypeError(f"{name}: no reader for settings of type {kind!r}")
    return parse(name, raw)


def _integer(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError as err:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from err
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as err:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from err
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name} must be a finite number > 0, got {raw!r}")
    return value
