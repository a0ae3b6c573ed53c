"""Apply a rule to one photo: every concept's action, in a fixed order, then protect enforcement.

Actions run in the stages of their registry entries (``applier.actions``), which make their
combination well defined whatever the rule's key order; within one stage, concepts run in the rule's
order. Protected pixels are restored from the input afterwards.
``RenderResult.protect`` counts them on this in-memory array only; the proof of record is made on
the stored, encoded files (``applier.proof``, run by the pipeline after they are written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from applier.actions import REGISTRY, Context
from applier.errors import MaskError
from applier.params import validate_rule
from applier.protect import ProtectCheck, ProtectMask, enforce, no_protect, verify

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


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
        enumerate(normalised.items()),
        key=lambda item: (REGISTRY[str(item[1][1]["action"])].stage(item[1][1]), item[0]),
    )
    context = Context(layers=layers, textures=textures or {})
    work = image
    steps: list[AppliedStep] = []
    for _, (concept, params) in order:
        action = str(params["action"])
        if concept not in layers:
            steps.append(AppliedStep(concept, action, 0))
            continue
        alpha = layers[concept]
        work = REGISTRY[action].run(work, alpha, params, context)
        steps.append(AppliedStep(concept, action, int(np.count_nonzero(alpha >= 0.5))))
    mask = protect if protect is not None else no_protect((h, w))
    out = enforce(image, work, mask) if mask.mask.any() else (work if work is not image else image.copy())
    return RenderResult(image=out, protect=verify(image, out, mask), steps=tuple(steps))
