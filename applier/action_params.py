"""Each rule action's parameters: names, types, ranges and defaults, stated once.

The registry (``applier.actions``) publishes and validates with these; an op's keyword defaults,
for direct callers, are read from here too (``default``), so no default is written twice.
"""

from __future__ import annotations

from typing import TypeVar

from applier.paramspec import REMOVE_MODES, SHADOW_MODES, TEXTURES, ParamSpec, number

T = TypeVar("T", int, float, str)

RECOLOR: tuple[ParamSpec, ...] = (
    ParamSpec("value", "color", "Target colour.", required=True),
    number("strength", 0.0, 1.0, 1.0, "Blend between the photo (0) and the full recolour (1)."),
    number("detail", 0.0, 2.0, 1.0, "Share of the photo's lightness variation kept (1 = as shot)."),
)
MATERIAL: tuple[ParamSpec, ...] = (
    ParamSpec("texture", "enum", "Built-in texture, or an uploaded one.", required=True, choices=TEXTURES),
    ParamSpec("texture_ref", "string", "Key of the uploaded texture (texture = upload)."),
    ParamSpec("color", "color", "Tint: the texture's mean colour becomes this colour."),
    number("scale", 0.1, 10.0, 1.0, "Texture scale relative to the region (1 = default pattern size)."),
    number("rotation", -180.0, 180.0, 0.0, "Pattern rotation in degrees."),
    number(
        "perspective",
        0.0,
        1.0,
        0.0,
        "Foreshortening towards the top of the region, for floors (0 = flat, 1 = strong).",
    ),
    number("shading", 0.0, 1.0, 1.0, "Share of the photo's shading re-applied on the texture."),
    ParamSpec("seed", "integer", "Variation of the procedural pattern.", 0, minimum=0, maximum=2**31 - 1),
)
REMOVE: tuple[ParamSpec, ...] = (
    ParamSpec(
        "mode",
        "enum",
        "auto: inpaint small regions, transparent otherwise.",
        "auto",
        choices=REMOVE_MODES,
    ),
    ParamSpec("color", "color", "Fill colour for mode = color.", "#ffffff"),
    number("feather", 0.0, 20.0, 1.0, "Extra matte softening in pixels."),
)
BLUR: tuple[ParamSpec, ...] = (number("radius", 0.05, 10.0, 1.0, "Blur radius in percent of the photo's short side."),)
ADJUST: tuple[ParamSpec, ...] = (
    number("brightness", -1.0, 1.0, 0.0, "Lightness shift (-1 darkest .. 1 brightest)."),
    number("contrast", -1.0, 1.0, 0.0, "Contrast around the region's mean lightness."),
    number("saturation", -1.0, 1.0, 0.0, "Chroma scale (-1 = grey)."),
    number("warmth", -1.0, 1.0, 0.0, "Colour temperature shift (negative = cooler)."),
)
SHADOW: tuple[ParamSpec, ...] = (
    ParamSpec("mode", "enum", "soften, remove, or add a drop shadow.", "soften", choices=SHADOW_MODES),
    number("strength", 0.0, 1.0, 0.6, "soften: share of the shadow lifted; add: shadow opacity."),
    number("softness", 0.0, 50.0, 6.0, "add: blur in percent of the object's height."),
    number("distance", 0.0, 50.0, 2.0, "add: offset in percent of the object's height."),
    number("angle", -180.0, 180.0, 90.0, "add: direction of the offset in degrees (90 = down)."),
)
KEEP: tuple[ParamSpec, ...] = ()


def default(specs: tuple[ParamSpec, ...], name: str, kind: type[T]) -> T:
    """The default of parameter ``name`` of ``specs``, checked to be a ``kind``."""
    value = next(spec.default for spec in specs if spec.name == name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise TypeError(f"{name}: default {value!r} is not a {kind.__name__}")
    return value
