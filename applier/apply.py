"""Apply a rule to one photo: every concept's action, in a fixed order, then protect enforcement.

Actions run in an order that makes their combination well defined whatever the rule's key order:
surface changes first (material, recolor, adjust, blur), then shadow clean-up, then removal (which
may make the image RGBA), and drop shadows last so they fall on the final background. Within one
stage, concepts run in the rule's order. Protected pixels are restored from the input afterwards.
``RenderResult.protect`` counts them on this in-memory array only; the proof of record is made on
the stored, encoded files (``applier.proof``, run by the pipeline after they are written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from applier.errors import MaskError
from applier.ops.material import material
from applier.ops.recolor import recolor
from applier.ops.remove import remove
from applier.ops.tone import adjust, blur, drop_shadow, lift_shadow
from applier.params import validate_rule
from applier.protect import ProtectCheck, ProtectMask, enforce, no_protect, verify

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

_STAGE = {"material": 0, "recolor": 1, "adjust": 2, "blur": 3, "shadow": 4, "remove": 5, "keep": 7}
_DROP_SHADOW_STAGE = 6


@dataclass(frozen=True)
class AppliedStep:
    concept: str
    action: str
    pixels: int
    """Pixels of the concept's alpha >= 0.5 (0 when the concept was not found in this photo)."""


@dataclass(frozen=True)
class RenderResult:
    """One photo after its rule: the image and the record that goes into the manifest."""

    image: U8
    """HxWx3 RGB, or HxWx4 RGBA when a removal made the background transparent."""
    protect: ProtectCheck
    steps: tuple[AppliedStep, ...] = field(default_factory=tuple)

    @property
    def has_alpha(self) -> bool:
        return bool(self.image.shape[2] == 4)


def _stage(action: str, params: Mapping[str, object]) -> int:
    if action == "shadow" and params.get("mode") == "add":
        return _DROP_SHADOW_STAGE
    return _STAGE[action]


def _run(
    action: str,
    image: U8,
    alpha: F32,
    params: dict[str, object],
    textures: Mapping[str, U8],
    others: Mapping[str, F32],
) -> U8:
    p = {k: v for k, v in params.items() if k != "action"}
    if action == "recolor":
        return recolor(image, alpha, value=str(p["value"]), strength=_f(p, "strength"), detail=_f(p, "detail"))
    if action == "material":
        ref = p.get("texture_ref")
        uploaded = textures.get(str(ref)) if ref is not None else None
        if p["texture"] == "upload" and uploaded is None:
            raise MaskError(f"uploaded texture {ref!r} was not provided")
        color = p.get("color")
        return material(
            image,
            alpha,
            texture=str(p["texture"]),
            scale=_f(p, "scale"),
            rotation=_f(p, "rotation"),
            perspective=_f(p, "perspective"),
            shading=_f(p, "shading"),
            seed=int(_f(p, "seed")),
            color=str(color) if color is not None else None,
            uploaded=uploaded,
        )
    if action == "remove":
        return remove(image, alpha, mode=str(p["mode"]), color=str(p["color"]), feather=_f(p, "feather"))
    if action == "blur":
        return blur(image, alpha, radius=_f(p, "radius"))
    if action == "adjust":
        return adjust(
            image,
            alpha,
            brightness=_f(p, "brightness"),
            contrast=_f(p, "contrast"),
            saturation=_f(p, "saturation"),
            warmth=_f(p, "warmth"),
        )
    if action == "shadow":
        if p["mode"] == "add":
            return drop_shadow(
                image,
                alpha,
                strength=_f(p, "strength"),
                softness=_f(p, "softness"),
                distance=_f(p, "distance"),
                angle=_f(p, "angle"),
            )
        strength = 1.0 if p["mode"] == "remove" else _f(p, "strength")
        return lift_shadow(image, alpha, strength=strength, exclude=_objects_beside(alpha, others))
    return image  # keep


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


def _f(params: Mapping[str, object], key: str) -> float:
    value = params[key]
    assert isinstance(value, int | float)
    return float(value)


def apply_rule(
    image: U8,
    layers: Mapping[str, F32],
    rule: Mapping[str, Mapping[str, object]],
    protect: ProtectMask | None = None,
    *,
    textures: Mapping[str, U8] | None = None,
) -> RenderResult:
    """Apply ``rule`` (``{concept: {"action": ..., **params}}``) to ``image`` (HxWx3 RGB uint8).

    ``layers`` maps concept names to HxW float32 alphas (from ``concept_layer`` or ``refine_alpha``);
    a concept of the rule without a layer is skipped and recorded with 0 pixels. ``protect`` comes
    from ``build_protect``. ``textures`` holds uploaded textures by their ``texture_ref``.
    The rule is validated (``ParamError`` names ``Concept.param``). Inputs are never modified.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MaskError(f"image must be HxWx3 RGB uint8, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    for name, alpha in layers.items():
        if alpha.shape != (h, w):
            raise MaskError(f"layer {name!r} is {alpha.shape}, the photo is {(h, w)}")
    normalised = validate_rule(rule)
    order = sorted(
        enumerate(normalised.items()), key=lambda item: (_stage(str(item[1][1]["action"]), item[1][1]), item[0])
    )
    work = image
    steps: list[AppliedStep] = []
    for _, (concept, params) in order:
        action = str(params["action"])
        if concept not in layers:
            steps.append(AppliedStep(concept, action, 0))
            continue
        alpha = layers[concept]
        work = _run(action, work, alpha, params, textures or {}, layers)
        steps.append(AppliedStep(concept, action, int(np.count_nonzero(alpha >= 0.5))))
    mask = protect if protect is not None else no_protect((h, w))
    out = enforce(image, work, mask) if mask.mask.any() else (work if work is not image else image.copy())
    return RenderResult(image=out, protect=verify(image, out, mask), steps=tuple(steps))
