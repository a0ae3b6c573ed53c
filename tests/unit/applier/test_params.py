import inspect
import json
from collections.abc import Callable

import pytest

from applier.action_params import MATERIAL, SHADOW, default
from applier.errors import ParamError
from applier.ops.material import material
from applier.ops.recolor import recolor
from applier.ops.remove import remove
from applier.ops.tone import adjust, blur, drop_shadow
from applier.params import ACTIONS, action_specs, describe_actions, validate_action, validate_rule


def test_recolor_normalises_named_and_hex_colours_and_fills_defaults() -> None:
    assert validate_action("recolor", {"value": "White"}) == {
        "value": "#ffffff",
        "strength": 1.0,
        "detail": 1.0,
    }
    assert validate_action("recolor", {"value": "#ABC"})["value"] == "#aabbcc"
    assert validate_action("recolor", {"value": "5B7FA6", "strength": 1})["strength"] == 1.0


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [
        ("paint", {}, "action"),
        ("recolor", {}, "value"),
        ("recolor", {"value": "ultraviolet"}, "value"),
        ("recolor", {"value": 12}, "value"),
        ("recolor", {"value": "white", "strength": 1.5}, "strength"),
        ("recolor", {"value": "white", "strength": True}, "strength"),
        ("recolor", {"value": "white", "strength": float("nan")}, "strength"),
        ("recolor", {"value": "white", "colour": "red"}, "colour"),
        ("material", {"texture": "brick"}, "texture"),
        ("material", {"texture": "upload"}, "texture_ref"),
        ("material", {"texture": "wood", "seed": 1.5}, "seed"),
        ("blur", {"radius": 0}, "radius"),
        ("adjust", {"warmth": "-0.2"}, "warmth"),
        ("shadow", {"mode": "drop"}, "mode"),
        ("keep", {"value": "white"}, "value"),
    ],
)
def test_errors_name_the_parameter(action: str, params: dict[str, object], field: str) -> None:
    with pytest.raises(ParamError) as info:
        validate_action(action, params)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")
    assert isinstance(info.value, ValueError)


def test_validate_does_not_mutate_and_returns_a_new_dict() -> None:
    params: dict[str, object] = {"texture": "tiles", "scale": 2}
    out = validate_action("material", params)
    assert params == {"texture": "tiles", "scale": 2}
    assert out["scale"] == 2.0 and out["shading"] == 1.0 and "texture_ref" not in out


def test_rule_errors_are_prefixed_with_the_concept() -> None:
    assert validate_rule({"Wall": {"action": "recolor", "value": "sage"}})["Wall"]["value"] == "#9caf88"
    with pytest.raises(ParamError) as info:
        validate_rule({"Wall": {"action": "recolor", "value": "sage", "strength": -1}})
    assert info.value.field == "Wall.strength"


def test_description_covers_every_action_and_is_json() -> None:
    described = describe_actions()
    assert tuple(described) == ACTIONS
    json.dumps(described)
    strength = described["recolor"]["params"]["strength"]  # type: ignore[index]
    assert strength == {
        "type": "number",
        "description": strength["description"],
        "default": 1.0,
        "minimum": 0.0,
        "maximum": 1.0,
    }
    for action, entry in described.items():
        for name, spec in entry["params"].items():  # type: ignore[attr-defined]
            if "default" in spec:
                extra = {"texture": "wood"} if action == "material" and name != "texture" else {}
                extra |= {"value": "white"} if action == "recolor" and name != "value" else {}
                assert validate_action(action, {**extra, name: spec["default"]})[name] == spec["default"]


def test_each_ops_own_keyword_defaults_are_the_registry_defaults() -> None:
    """The specs state the defaults; an op's keyword defaults (for direct callers) are read from them
    (``applier.action_params.default``), and a literal written instead may not drift."""
    ops: dict[str, Callable[..., object]] = {
        "recolor": recolor,
        "material": material,
        "remove": remove,
        "blur": blur,
        "adjust": adjust,
        "shadow": drop_shadow,
    }
    for action, op in ops.items():
        signature = inspect.signature(op).parameters
        for spec in action_specs(action):
            if spec.default is None or spec.name not in signature:
                continue
            assert signature[spec.name].default == spec.default, f"{action}.{spec.name}"


def test_a_cross_parameter_check_of_the_registry_runs() -> None:
    with pytest.raises(ParamError) as e:
        validate_action("material", {"texture": "upload"})
    assert e.value.field == "texture_ref"


def test_a_default_read_as_the_wrong_kind_is_refused() -> None:
    assert default(SHADOW, "strength", float) == 0.6
    assert default(MATERIAL, "seed", int) == 0
    with pytest.raises(TypeError, match="mode"):
        default(SHADOW, "mode", float)
