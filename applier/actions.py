"""The rule actions, one entry each: name, description, parameters (with their defaults), the op
that renders it and the stage it runs in. Validation (``applier.params``), the renderer
(``applier.apply``) and the published descriptions all read this one registry.

Stages make a rule's result independent of its key order: surface changes first (material, recolor,
adjust, blur), then shadow clean-up, then removal (which may make the image RGBA), and drop shadows
last so they fall on the final background.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from applier.action_params import ADJUST, BLUR, KEEP, MATERIAL, RECOLOR, REMOVE, SHADOW
from applier.errors import MaskError, ParamError
from applier.ops.material import material
from applier.ops.recolor import recolor
from applier.ops.remove import remove
from applier.ops.tone import adjust, blur, drop_shadow, lift_shadow
from applier.paramspec import REMOVE_MODES, SHADOW_MODES, TEXTURES, ParamSpec

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Params = Mapping[str, object]


@dataclass(frozen=True)
class Context:
    """What an op may need beyond its own layer: every layer of the photo, and uploaded textures."""

    layers: Mapping[str, F32] = field(default_factory=lambda: MappingProxyType({}))
    textures: Mapping[str, U8] = field(default_factory=lambda: MappingProxyType({}))


Run = Callable[[U8, F32, Params, Context], U8]
"""Render one action: (working image, the concept's alpha, validated parameters, context)."""


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    params: tuple[ParamSpec, ...]
    run: Run
    stage: Callable[[Params], int]
    """Where in the fixed order the action runs, given its validated parameters."""
    check: Callable[[Params], None] | None = None
    """A rule across parameters, run after each parameter passed on its own."""

    def describe(self) -> dict[str, object]:
        return {"description": self.description, "params": {spec.name: spec.describe() for spec in self.params}}


def _fixed(stage: int) -> Callable[[Params], int]:
    return lambda _params: stage


def _number(params: Params, key: str) -> float:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(key, f"must be a number, got {type(value).__name__}")
    return float(value)


def _text(params: Params, key: str) -> str | None:
    value = params.get(key)
    return None if value is None else str(value)


def _recolor(image: U8, alpha: F32, p: Params, _ctx: Context) -> U8:
    return recolor(image, alpha, value=str(p["value"]), strength=_number(p, "strength"), detail=_number(p, "detail"))


def _material(image: U8, alpha: F32, p: Params, ctx: Context) -> U8:
    ref = _text(p, "texture_ref")
    uploaded = ctx.textures.get(ref) if ref is not None else None
    if p["texture"] == "upload" and uploaded is None:
        raise MaskError(f"uploaded texture {ref!r} was not provided")
    return material(
        image,
        alpha,
        texture=str(p["texture"]),
        scale=_number(p, "scale"),
        rotation=_number(p, "rotation"),
        perspective=_number(p, "perspective"),
        shading=_number(p, "shading"),
        seed=int(_number(p, "seed")),
        color=_text(p, "color"),
        uploaded=uploaded,
    )


def _upload_needs_a_ref(p: Params) -> None:
    if p["texture"] == "upload" and "texture_ref" not in p:
        raise ParamError("texture_ref", "is required when texture is 'upload'")


def _remove(image: U8, alpha: F32, p: Params, _ctx: Context) -> U8:
    return remove(image, alpha, mode=str(p["mode"]), color=str(p["color"]), feather=_number(p, "feather"))


def _blur(image: U8, alpha: F32, p: Params, _ctx: Context) -> U8:
    return blur(image, alpha, radius=_number(p, "radius"))


def _adjust(image: U8, alpha: F32, p: Params, _ctx: Context) -> U8:
    return adjust(
        image,
        alpha,
        brightness=_number(p, "brightness"),
        contrast=_number(p, "contrast"),
        saturation=_number(p, "saturation"),
        warmth=_number(p, "warmth"),
    )


def _shadow(image: U8, alpha: F32, p: Params, ctx: Context) -> U8:
    if p["mode"] == "add":
        return drop_shadow(
            image,
            alpha,
            strength=_number(p, "strength"),
            softness=_number(p, "softness"),
            distance=_number(p, "distance"),
            angle=_number(p, "angle"),
        )
    strength = 1.0 if p["mode"] == "remove" else _number(p, "strength")
    return lift_shadow(image, alpha, strength=strength, exclude=_objects_beside(alpha, ctx.layers))


def _shadow_stage(p: Params) -> int:
    return 6 if p.get("mode") == "add" else 4  # a drop shadow falls on the final background


def _objects_beside(alpha: F32, others: Mapping[str, F32]) -> F32 | None:
    """Union of the other layers that do not contain this region (a Background contains its shadow;
    the Product casting it does not): they must not be touched by the region's clean-up."""
    core = alpha >= 0.5
    area = int(np.count_nonzero(core))
    union: F32 | None = None
    for other in others.values():
        if other is alpha or area == 0:
            continue
        if np.count_nonzero(other[core] >= 0.5) >= area // 2:
            continue
        union = other.copy() if union is None else np.maximum(union, other)
    return union


def _keep(image: U8, _alpha: F32, _p: Params, _ctx: Context) -> U8:
    return image


_ALL: tuple[Action, ...] = (
    Action(
        "recolor",
        "Change the colour while keeping the photo's shading, texture and lighting (in CIE Lab: chroma "
        "replaced, lightness moved to the target, local lightness detail kept). The same rule gives the "
        "same colour on every photo of an album.",
        RECOLOR,
        run=_recolor,
        stage=_fixed(1),
    ),
    Action(
        "material",
        "Replace the surface with a texture scaled to the region, with the photo's shading re-applied.",
        MATERIAL,
        run=_material,
        stage=_fixed(0),
        check=_upload_needs_a_ref,
    ),
    Action(
        "remove",
        "Erase the concept: small regions are inpainted; large ones (a seller Background) become "
        "transparent or a solid colour with a clean matte edge.",
        REMOVE,
        run=_remove,
        stage=_fixed(5),
    ),
    Action(
        "blur",
        "Blur the region (e.g. a background or a licence plate).",
        BLUR,
        run=_blur,
        stage=_fixed(3),
    ),
    Action(
        "adjust",
        "Tone adjustments inside the region.",
        ADJUST,
        run=_adjust,
        stage=_fixed(2),
    ),
    Action(
        "shadow",
        "On a Shadow concept: soften or remove it. On a Product: add a soft drop shadow under it.",
        SHADOW,
        run=_shadow,
        stage=_shadow_stage,
    ),
    Action(
        "keep",
        "Leave the concept as it is.",
        KEEP,
        run=_keep,
        stage=_fixed(7),
    ),
)

REGISTRY: Mapping[str, Action] = MappingProxyType({action.name: action for action in _ALL})
"""Every action by name, in the order they are published."""

__all__ = ["REGISTRY", "REMOVE_MODES", "SHADOW_MODES", "TEXTURES", "Action", "Context", "ParamSpec"]
