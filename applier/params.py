"""Rule actions and their parameters: the one place that says what a rule may ask for.

The service validates every rule with ``validate_action`` before saving or running it, and publishes
``describe_actions()`` in its presets, so the API, the docs and the renderer agree on names, types,
ranges and defaults. A rule in the API is ``{concept: {"action": "recolor", "value": "white", ...}}``;
``validate_action`` receives one concept's parameters without the ``"action"`` key.

Lengths that must look the same on photos of different sizes (blur radius, shadow softness) are
relative: percent of the photo's short side or of the object's height. Matte feathering is in pixels,
because edge quality is a pixel-level matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from applier.colors import NAMED_COLORS, parse_color
from applier.errors import ParamError

ACTIONS: tuple[str, ...] = ("recolor", "material", "remove", "blur", "adjust", "shadow", "keep")

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


def _num(name: str, lo: float, hi: float, default: float, description: str) -> ParamSpec:
    return ParamSpec(name, "number", description, default=default, minimum=lo, maximum=hi)


_SPECS: dict[str, tuple[str, tuple[ParamSpec, ...]]] = {
    "recolor": (
        "Change the colour while keeping the photo's shading, texture and lighting (in CIE Lab: chroma "
        "replaced, lightness moved to the target, local lightness detail kept). The same rule gives the "
        "same colour on every photo of an album.",
        (
            ParamSpec("value", "color", "Target colour.", required=True),
            _num("strength", 0.0, 1.0, 1.0, "Blend between the photo (0) and the full recolour (1)."),
            _num("detail", 0.0, 2.0, 1.0, "Share of the photo's lightness variation kept (1 = as shot)."),
        ),
    ),
    "material": (
        "Replace the surface with a texture scaled to the region, with the photo's shading re-applied.",
        (
            ParamSpec("texture", "enum", "Built-in texture, or an uploaded one.", required=True, choices=TEXTURES),
            ParamSpec("texture_ref", "string", "Key of the uploaded texture (texture = upload)."),
            ParamSpec("color", "color", "Tint: the texture's mean colour becomes this colour."),
            _num("scale", 0.1, 10.0, 1.0, "Texture scale relative to the region (1 = default pattern size)."),
            _num("rotation", -180.0, 180.0, 0.0, "Pattern rotation in degrees."),
            _num(
                "perspective",
                0.0,
                1.0,
                0.0,
                "Foreshortening towards the top of the region, for floors (0 = flat, 1 = strong).",
            ),
            _num("shading", 0.0, 1.0, 1.0, "Share of the photo's shading re-applied on the texture."),
            ParamSpec("seed", "integer", "Variation of the procedural pattern.", 0, minimum=0, maximum=2**31 - 1),
        ),
    ),
    "remove": (
        "Erase the concept: small regions are inpainted; large ones (a seller Background) become "
        "transparent or a solid colour with a clean matte edge.",
        (
            ParamSpec(
                "mode",
                "enum",
                "auto: inpaint small regions, transparent otherwise.",
                "auto",
                choices=REMOVE_MODES,
            ),
            ParamSpec("color", "color", "Fill colour for mode = color.", "#ffffff"),
            _num("feather", 0.0, 20.0, 1.0, "Extra matte softening in pixels."),
        ),
    ),
    "blur": (
        "Blur the region (e.g. a background or a licence plate).",
        (_num("radius", 0.05, 10.0, 1.0, "Blur radius in percent of the photo's short side."),),
    ),
    "adjust": (
        "Tone adjustments inside the region.",
        (
            _num("brightness", -1.0, 1.0, 0.0, "Lightness shift (-1 darkest .. 1 brightest)."),
            _num("contrast", -1.0, 1.0, 0.0, "Contrast around the region's mean lightness."),
            _num("saturation", -1.0, 1.0, 0.0, "Chroma scale (-1 = grey)."),
            _num("warmth", -1.0, 1.0, 0.0, "Colour temperature shift (negative = cooler)."),
        ),
    ),
    "shadow": (
        "On a Shadow concept: soften or remove it. On a Product: add a soft drop shadow under it.",
        (
            ParamSpec("mode", "enum", "soften, remove, or add a drop shadow.", "soften", choices=SHADOW_MODES),
            _num("strength", 0.0, 1.0, 0.6, "soften: share of the shadow lifted; add: shadow opacity."),
            _num("softness", 0.0, 50.0, 6.0, "add: blur in percent of the object's height."),
            _num("distance", 0.0, 50.0, 2.0, "add: offset in percent of the object's height."),
            _num("angle", -180.0, 180.0, 90.0, "add: direction of the offset in degrees (90 = down)."),
        ),
    ),
    "keep": ("Leave the concept as it is.", ()),
}

assert tuple(_SPECS) == ACTIONS


def action_specs(action: str) -> tuple[ParamSpec, ...]:
    if action not in _SPECS:
        raise ParamError("action", f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    return _SPECS[action][1]


def _coerce(spec: ParamSpec, value: object) -> object:
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


def validate_action(action: str, params: Mapping[str, object]) -> dict[str, object]:
    """Validate one action's parameters; return a new dict with defaults filled and values normalised.

    Raises ``ParamError`` naming the parameter (``field``) for an unknown action (field ``action``),
    an unknown or missing parameter, a wrong type or an out-of-range value.
    """
    specs = {spec.name: spec for spec in action_specs(action)}
    if not isinstance(params, Mapping):
        raise ParamError("params", f"must be an object, got {type(params).__name__}")
    for key in params:
        if key == "action" and params[key] == action:
            continue  # tolerated: the whole rule entry passed as it is
        if key not in specs:
            known = ", ".join(specs) or "none"
            raise ParamError(str(key), f"unknown parameter for action {action!r} (known: {known})")
    out: dict[str, object] = {}
    for name, spec in specs.items():
        if name in params and params[name] is not None:
            out[name] = _coerce(spec, params[name])
        elif spec.required:
            raise ParamError(name, f"is required for action {action!r}")
        elif spec.default is not None:
            out[name] = spec.default
    if action == "material" and out["texture"] == "upload" and "texture_ref" not in out:
        raise ParamError("texture_ref", "is required when texture is 'upload'")
    return out


def validate_rule(rule: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, object]]:
    """Validate a whole rule ``{concept: {"action": ..., **params}}``; fields read ``Concept.param``."""
    out: dict[str, dict[str, object]] = {}
    for concept, entry in rule.items():
        if not isinstance(entry, Mapping):
            raise ParamError(f"{concept}", "must be an object with an 'action'")
        action = entry.get("action")
        if not isinstance(action, str):
            raise ParamError(f"{concept}.action", f"is required; one of {', '.join(ACTIONS)}")
        params = {k: v for k, v in entry.items() if k != "action"}
        try:
            normalised = validate_action(action, params)
        except ParamError as e:
            raise ParamError(f"{concept}.{e.field}", e.message) from e
        out[concept] = {"action": action, **normalised}
    return out


def describe_actions() -> dict[str, dict[str, object]]:
    """Every action with its description and parameters, JSON-serialisable (for presets and OpenAPI)."""
    return {
        action: {
            "description": description,
            "params": {spec.name: spec.describe() for spec in specs},
        }
        for action, (description, specs) in _SPECS.items()
    }
