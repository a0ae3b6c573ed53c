"""An execute request's instance choices: typed as the servicer decodes them, checked against the
job's items (each refusal names its field), stored in their JSON form."""

from __future__ import annotations

import pytest

from protos.s3.v1 import types_pb2 as pb
from server.db.tables import JobItemRow
from server.errors import ValidationFailed
from server.grpc_api.convert import instance_choices_from_pb
from server.item_records import StoredInstance
from server.service.instance_choices import InstanceChoice, instance_choices

CONCEPTS = ("Wall", "Floor")


def _items() -> list[JobItemRow]:
    walls = [StoredInstance("Wall", n, 0.9, (0.0, 0.0, 1.0, 1.0), 1, f"masks/u/j/0_Wall_{n}.png") for n in (1, 2)]
    return [JobItemRow(idx=0, instances=walls), JobItemRow(idx=1, instances=None)]


def test_choices_are_stored_sorted_and_deduplicated() -> None:
    requested = {0: {"Wall": InstanceChoice(exclude=(2, 2), lock=(1,))}, 1: {"Floor": InstanceChoice(lock=(7, 3))}}
    assert instance_choices(requested, _items(), CONCEPTS) == {
        "0": {"Wall": {"exclude": [2], "lock": [1]}},
        "1": {"Floor": {"exclude": [], "lock": [3, 7]}},  # not analysed: any number may be chosen
    }


@pytest.mark.parametrize(
    ("requested", "field", "message"),
    [
        ({5: {"Wall": InstanceChoice()}}, "instances.5", "the job has no item 5"),
        ({0: {"Sky": InstanceChoice()}}, "instances.0.Sky", "unknown concept"),
        (
            {0: {"Wall": InstanceChoice(exclude=(0,))}},
            "instances.0.Wall.exclude",
            "instance numbers are integers from 1",
        ),
        ({1: {"Wall": InstanceChoice(lock=(1001,))}}, "instances.1.Wall.lock", "instance numbers are integers from 1"),
        ({0: {"Wall": InstanceChoice(lock=(3,))}}, "instances.0.Wall.lock", "item 0 has no Wall #3"),
        (
            {0: {"Wall": InstanceChoice(exclude=(1,), lock=(1,))}},
            "instances.0.Wall",
            "an instance cannot be both excluded and locked",
        ),
    ],
)
def test_a_bad_choice_names_its_field(
    requested: dict[int, dict[str, InstanceChoice]], field: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        instance_choices(requested, _items(), CONCEPTS)
    assert (raised.value.field, raised.value.message) == (field, f"{field}: {message}")


def test_the_servicer_decodes_the_request_into_typed_choices() -> None:
    request = {3: pb.ItemChoices(concepts={"Wall": pb.InstanceChoice(exclude=[2], lock=[1])})}
    assert instance_choices_from_pb(request) == {3: {"Wall": InstanceChoice(exclude=(2,), lock=(1,))}}
