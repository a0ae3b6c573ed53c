"""A concept action, typed as the servicer decodes it and flattened as rules and jobs store it: the
two forms convert in one place and back without loss."""

from __future__ import annotations

import pytest
from google.protobuf.struct_pb2 import Struct

from protos.s3.v1 import types_pb2 as pb
from server.grpc_api.convert import concept_actions_from_pb, concept_actions_to_pb
from server.service.concept_action import ConceptAction, actions_from_stored

STORED: dict[str, dict[str, object]] = {
    "Wall": {"action": "recolor", "value": "#ffffff", "strength": 1.0},
    "Floor": {"action": "keep"},
}


def test_the_stored_form_round_trips() -> None:
    typed = actions_from_stored(STORED)
    assert typed["Wall"] == ConceptAction("recolor", {"value": "#ffffff", "strength": 1.0})
    assert {c: a.stored() for c, a in typed.items()} == STORED


def test_a_parameter_named_action_cannot_overwrite_the_action() -> None:
    with pytest.raises(ValueError, match="would overwrite the action"):
        ConceptAction("recolor", {"action": "remove"})
    # From a request, where the REST shim could not send one either, it is dropped.
    assert ConceptAction.of("recolor", {"action": "remove", "value": "sage"}).stored() == {
        "action": "recolor",
        "value": "sage",
    }


def test_the_servicer_decodes_and_encodes_the_message_form() -> None:
    params = Struct()
    params.update({"value": "sage", "action": "remove"})
    typed = concept_actions_from_pb({"Wall": pb.ConceptAction(action="recolor", params=params)})
    assert typed == {"Wall": ConceptAction("recolor", {"value": "sage"})}
    encoded = concept_actions_to_pb(STORED)
    assert encoded["Wall"].action == "recolor" and dict(encoded["Wall"].params) == {"value": "#ffffff", "strength": 1.0}
    assert concept_actions_from_pb(encoded) == actions_from_stored(STORED)
