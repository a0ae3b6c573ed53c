"""Validation of what users send about rules and jobs, against a preset.

The values arrive typed (the servicer decodes them from the request message, whose types the REST
codec has already enforced), so what is checked here is what a type cannot say: known ids, ranges,
duplicates, conflicts. Errors are ``ValidationFailed`` whose message starts with the path of the
bad field (``concepts.Wall.value: ...``) so a client can point at it.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from applier.errors import ParamError
from applier.params import validate_action
from server.errors import ValidationFailed
from server.presets import COMPUTED_PROTECT_LAYERS, PRESETS, PresetSpec
from server.service.concept_action import ACTION_KEY, ConceptAction, ConceptActions

MAX_NAME_CHARS = 100


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", field=field)


def storable(value: object, field: str) -> None:
    """Refuse what a JSON answer could not give back later: NaN, infinities, at any depth.

    Values are stored as JSON and read back into every later answer about them, so one stored
    ``inf`` would make each of those answers fail.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(field, "must be a finite number")
    if isinstance(value, Mapping):
        for key, item in value.items():
            storable(item, f"{field}.{key}")
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for i, item in enumerate(value):
            storable(item, f"{field}[{i}]")


def preset_by_id(preset_id: str, *, field: str = "preset_id") -> PresetSpec:
    if not preset_id:
        raise _fail(field, "is required")
    preset = PRESETS.get(preset_id)
    if preset is None:
        raise _fail(field, f"unknown preset {preset_id!r}; known: {', '.join(PRESETS)}")
    return preset


def rule_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise _fail("name", "must not be empty")
    if len(cleaned) > MAX_NAME_CHARS:
        raise _fail("name", f"must be at most {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in cleaned):
        raise _fail("name", "must not contain control characters")
    return cleaned


def concept_actions(
    preset: PresetSpec, concepts: ConceptActions, *, field: str = "concepts"
) -> dict[str, dict[str, Any]]:
    """Every action validated and normalised, in the stored form (``{concept: {"action": ..., **params}}``)."""
    if not concepts:
        raise _fail(field, "give at least one concept action")
    out: dict[str, dict[str, Any]] = {}
    for concept_id, entry in concepts.items():
        path = f"{field}.{concept_id}"
        if preset.concept(concept_id) is None:
            raise _fail(path, f"unknown concept for preset {preset.id!r}; known: {', '.join(preset.concept_ids)}")
        action = entry.action
        if not action:
            raise _fail(f"{path}.action", "is required")
        params = dict(entry.params)
        storable(params, path)
        try:
            normalised = validate_action(action, params)
        except ParamError as e:
            raise _fail(f"{path}.{e.field}" if e.field != "action" else f"{path}.action", e.message) from e
        if action == "material" and normalised.get("texture") == "upload":
            # The renderer supports uploaded textures, but the API has no texture upload yet.
            raise _fail(f"{path}.texture", "uploaded textures are not available yet; use a built-in texture")
        out[concept_id] = ConceptAction(action, normalised).stored()
    return out


def protect_layers(preset: PresetSpec, protect: Sequence[str], *, field: str = "protect") -> list[str]:
    """Known, de-duplicated protect layers in the order given."""
    allowed = (*preset.concept_ids, *COMPUTED_PROTECT_LAYERS)
    out: list[str] = []
    for i, layer in enumerate(protect):
        if layer not in allowed:
            raise _fail(f"{field}[{i}]", f"unknown protect layer {layer!r}; known: {', '.join(allowed)}")
        if layer not in out:
            out.append(layer)
    return out


def analysis_concepts(preset: PresetSpec, concepts: Sequence[str]) -> list[str]:
    """Known, de-duplicated concept ids to analyse, in the order given."""
    if not concepts:
        raise ValidationFailed("concepts: give a non-empty list of concept ids", field="concepts")
    out: list[str] = []
    for i, c in enumerate(concepts):
        if preset.concept(c) is None:
            raise ValidationFailed(
                f"concepts[{i}]: unknown concept {c!r}; known: {', '.join(preset.concept_ids)}",
                field=f"concepts[{i}]",
            )
        if c not in out:
            out.append(c)
    return out


def no_conflicts(concepts: Mapping[str, Mapping[str, Any]], protect: Sequence[str]) -> None:
    """A protected concept cannot also be changed by the same rule."""
    for layer in protect:
        entry = concepts.get(layer)
        if entry is not None and entry.get(ACTION_KEY) != "keep":
            raise _fail(f"concepts.{layer}", "is protected by this rule; remove it from protect or use 'keep'")
