"""One parameter of a rule action: its name, type, range and default, and how a value is checked.

The actions themselves (which parameters each takes) are in ``applier.actions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from applier.colors import NAMED_COLORS, parse_color
from applier.errors import ParamError

TEXTURES: tuple[str, ...] = ("wood", "marble", "concrete", "tiles", "upload")
REMOVE_MODES: tuple[str, ...] = ("auto", "inpaint", "transparent", "color")
SHADOW_MODES: tuple[str, ...] = ("soften", "remove", "add")

Kind = Literal["number", "integer", "color", "enum", "string"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of one action."""

    name: str
    kind: Kind
    description: str
    default: object = None
    """``None`` with ``required=False``: optional and absent from the normalised dict when not given."""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.kind, "description": self.description}
        if self.required:
            out["required"] = True
        if self.default is not None:
            out["default"] = self.default
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["enum"] = list(self.choices)
        if self.kind == "color":
            out["format"] = "a colour name or #rrggbb"
            out["names"] = sorted(NAMED_COLORS)
        return out


def number(name: str, lo: float, hi: float, default: float, description: str) -> ParamSpec:
    return ParamSpec(name, "number", description, default=default, minimum=lo, maximum=hi)


def coerce(spec: ParamSpec, value: object) -> object:
    if spec.kind in ("number", "integer"):
        # bool is an int in Python; a rule saying `"strength": true` is a mistake, not 1.0.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(spec.name, f"must be a {spec.kind}, got {type(value).__name__}")
        if spec.kind == "integer" and not float(value).is_integer():
            raise ParamError(spec.name, f"must be an integer, got {value!r}")
        number: float | int = int(value) if spec.kind == "integer" else float(value)
        if number != number:  # NaN compares unequal to itself and would slip past range checks.
            raise ParamError(spec.name, "must be a finite number")
        if spec.minimum is not None and number < spec.minimum:
            raise ParamError(spec.name, f"must be >= {spec.minimum}, got {value!r}")
        if spec.maximum is not None and number > spec.maximum:
            raise ParamError(spec.name, f"must be <= {spec.maximum}, got {value!r}")
        return number
    if not isinstance(value, str):
        raise ParamError(spec.name, f"must be a string, got {type(value).__name__}")
    if spec.kind == "color":
        try:
            return parse_color(value)
        except ValueError as e:
            raise ParamError(spec.name, str(e)) from e
    if spec.kind == "enum":
        if value not in spec.choices:
            raise ParamError(spec.name, f"must be one of {', '.join(spec.choices)}, got {value!r}")
        return value
    if not value.strip():
        raise ParamError(spec.name, "must not be empty")
    return value
