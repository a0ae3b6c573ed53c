"""Validating what a rule asks for, against the one registry of actions (``applier.actions``).

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

from applier.actions import REGISTRY, Action
from applier.colors import parse_color
from applier.errors import ParamError
from applier.paramspec import REMOVE_MODES, SHADOW_MODES, TEXTURES, Kind, ParamSpec, coerce

ACTIONS: tuple[str, ...] = tuple(REGISTRY)

__all__ = [
    "ACTIONS",
    "REMOVE_MODES",
    "SHADOW_MODES",
    "TEXTURES",
    "Kind",
    "ParamSpec",
    "action_of",
    "action_specs",
    "describe_actions",
    "parse_color",
    "validate_action",
    "validate_rule",
]


def action_of(action: str) -> Action:
    found = REGISTRY.get(action)
    if found is None:
        raise ParamError("action", f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    return found


def action_specs(action: str) -> tuple[ParamSpec, ...]:
    return action_of(action).params


def validate_action(action: str, params: Mapping[str, object]) -> dict[str, object]:
    """Validate one action's parameters; return a new dict with defaults filled and values normalised.

    Raises ``ParamError`` naming the parameter (``field``) for an unknown action (field ``action``),
    an unknown or missing parameter, a wrong type or an out-of-range value.
    """
    entry = action_of(action)
    specs = {spec.name: spec for spec in entry.params}
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
            out[name] = coerce(spec, params[name])
        elif spec.required:
            raise ParamError(name, f"is required for action {action!r}")
        elif spec.default is not None:
            out[name] = spec.default
    if entry.check is not None:
        entry.check(out)
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
    return {name: action.describe() for name, action in REGISTRY.items()}
