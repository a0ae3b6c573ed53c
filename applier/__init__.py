"""Pure numpy/OpenCV rendering of rules onto photos: masks, instances, protect layers, actions, sets.

Images are HxWx3 RGB uint8 (outputs may be HxWx4 RGBA); masks and alphas are HxW float32 in [0, 1].
No function mutates its inputs, and nothing here does I/O. The pipeline calls, per photo::

    layer = concept_layer("Wall", instances, image, Selection(exclude=frozenset({2})))  # per concept
    mask = build_protect(image, ["Text", "edges"], {"Wall": layer.alpha, ...}, layer.locked)
    result = apply_rule(image, {"Wall": layer.alpha}, {"Wall": {"action": "recolor", "value": "white"}}, mask)
    # result.image, result.protect (changed_pixels == 0), result.steps

then ``render_item(idx, result.image, templates)`` for its renditions, and per job
``sets.package(renditions, sets.manifest([ManifestItem(...), ...], templates, rule, protect))``.

``refine_alpha(prob, image)`` turns one low-resolution probability mask (uint8, e.g. 288x288, whole
photo, aspect not kept) into a photo-sized alpha directly. ``validate_action`` / ``validate_rule`` /
``describe_actions`` are what the service validates and publishes rules with.
"""

from applier import proof
from applier.apply import AppliedStep, RenderResult, apply_rule
from applier.errors import ApplierError, MaskError, ParamError
from applier.instances import ConceptLayer, InstanceLike, Selection, alpha_from_mask, concept_layer, instance_order
from applier.masks import refine_alpha, upsample_probability
from applier.params import ACTIONS, describe_actions, validate_action, validate_rule
from applier.protect import COMPUTED_LAYERS, ProtectCheck, ProtectMask, build_protect
from applier.sets import ManifestItem, Rendition, before_after, render_item, thumbnail
from applier.templates import Template, encode, render

__all__ = [
    "ACTIONS",
    "COMPUTED_LAYERS",
    "AppliedStep",
    "ApplierError",
    "ConceptLayer",
    "InstanceLike",
    "ManifestItem",
    "MaskError",
    "ParamError",
    "ProtectCheck",
    "ProtectMask",
    "RenderResult",
    "Rendition",
    "Selection",
    "Template",
    "alpha_from_mask",
    "apply_rule",
    "before_after",
    "build_protect",
    "concept_layer",
    "describe_actions",
    "encode",
    "instance_order",
    "proof",
    "refine_alpha",
    "render",
    "render_item",
    "thumbnail",
    "upsample_probability",
    "validate_action",
    "validate_rule",
]
