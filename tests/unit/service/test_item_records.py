"""The stored instance and rendition records: old rows read back and write out byte for byte, a
malformed record is refused naming its key, and what a worker reports is refused with the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from server.db.tables import RecordList
from server.errors import ValidationFailed
from server.grpc_api.worker_convert import outputs_from_json, outputs_to_json
from server.item_records import (
    MalformedRecord,
    StoredInstance,
    StoredRendition,
    decode_all,
    encode_all,
    reported,
)
from server.pipeline.stored_instances import read_instances
from server.service.settle import AnalysisOutputs, ItemOutputs
from server.work import PermanentFailure, WorkItem, item_from_json, to_json

# As rows written before the records were typed hold them (the JSON of ``json.dumps`` on the dicts
# the pipeline built): an analysis instance, a callback's instance (no mask), a proven rendition.
OLD_INSTANCE = (
    '{"concept": "Wall", "number": 2, "score": 0.9731, "box": [10.0, 20.5, 300.0, 410.2], "area": 5120,'
    ' "mask_key": "masks/u/j/0_Wall_2.png"}'
)
OLD_CALLBACK_INSTANCE = '{"concept": "Floor", "number": 1, "score": 0.5, "box": [0.0, 0.0, 1.0, 1.0], "area": 1}'
OLD_RENDITION = (
    '{"template_id": "square_1080", "key": "outputs/u/j/0/square_1080.jpg", "format": "jpg",'
    ' "template": "square_1080", "path": "0/square_1080.jpg", "width": 1080, "height": 1080,'
    ' "media_type": "image/jpeg", "bytes": 123456, "sha256": "ab12",'
    ' "protect": {"method": "lossy: tolerance", "compared_pixels": 10, "passed": true}}'
)


@pytest.mark.parametrize(
    ("cls", "old"),
    [(StoredInstance, OLD_INSTANCE), (StoredInstance, OLD_CALLBACK_INSTANCE), (StoredRendition, OLD_RENDITION)],
)
def test_an_old_record_reads_back_and_writes_out_unchanged(cls: Any, old: str) -> None:
    record = cls.from_json(json.loads(old))
    assert json.dumps(record.to_json()) == old


def test_old_rows_read_back_through_the_column_type_unchanged() -> None:
    md = MetaData()
    table = Table(
        "items",
        md,
        Column("id", Integer, primary_key=True),
        Column("instances", RecordList(StoredInstance)),
        Column("renditions", RecordList(StoredRendition)),
    )
    engine = create_engine("sqlite://")
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO items (id, instances, renditions) VALUES (1, :i, :r), (2, 'null', NULL)"),
            {"i": f"[{OLD_INSTANCE}, {OLD_CALLBACK_INSTANCE}]", "r": f"[{OLD_RENDITION}]"},
        )
        rows = {r.id: r for r in c.execute(select(table))}
        assert [i.mask_key for i in rows[1].instances] == ["masks/u/j/0_Wall_2.png", None]
        assert rows[1].renditions[0].protect["passed"] is True
        assert (rows[2].instances, rows[2].renditions) == (None, None)
        # Written back: the same text as before.
        c.execute(insert(table).values(id=3, instances=rows[1].instances, renditions=rows[1].renditions))
        raw = c.execute(text("SELECT instances, renditions FROM items WHERE id = 3")).one()
        assert raw == (f"[{OLD_INSTANCE}, {OLD_CALLBACK_INSTANCE}]", f"[{OLD_RENDITION}]")
        with pytest.raises(Exception, match="StoredInstance records only, not dict"):
            c.execute(insert(table).values(id=4, instances=[json.loads(OLD_INSTANCE)]))


def test_a_malformed_stored_row_is_a_clear_error() -> None:
    broken = json.loads(OLD_INSTANCE)
    del broken["area"]
    with pytest.raises(MalformedRecord, match=r"stored StoredInstance\[1\]\.area: is required"):
        decode_all(StoredInstance, [json.loads(OLD_INSTANCE), broken], what="stored StoredInstance")


def _instance(**change: Any) -> dict[str, Any]:
    return {**json.loads(OLD_INSTANCE), **change}


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (_instance(score=float("inf")), "score", "must be a finite number"),
        (_instance(score="0.5"), "score", "must be a number"),
        (_instance(number=True), "number", "must be an integer"),
        (_instance(number=1.5), "number", "must be an integer"),
        (_instance(box=[0, 0, 1]), "box", "must be 4 numbers: x0, y0, x1, y1"),
        (_instance(box=[0, float("nan"), 1, 1]), "box", "must be a finite number"),
        (_instance(concept=3), "concept", "must be a string"),
        (_instance(mask_key=7), "mask_key", "must be a string"),
        (_instance(extra=1), "extra", "unknown field"),
        ("Wall", "", "must be an object"),
    ],
)
def test_a_malformed_instance_is_refused_naming_its_key(doc: object, field: str, message: str) -> None:
    with pytest.raises(MalformedRecord) as raised:
        StoredInstance.from_json(doc)
    assert (raised.value.field, raised.value.message) == (field, message)


def test_a_rendition_names_its_template_once() -> None:
    doc = {**json.loads(OLD_RENDITION), "template": "other"}
    with pytest.raises(MalformedRecord, match="template: must equal template_id"):
        StoredRendition.from_json(doc)


def test_reported_records_fail_with_the_contracts_field() -> None:
    with pytest.raises(ValidationFailed) as raised:
        reported(StoredInstance, [json.loads(OLD_INSTANCE), _instance(score=float("nan"))], field="instances")
    assert (raised.value.field, raised.value.message) == (
        "instances[1].score",
        "instances[1].score: must be a finite number",
    )
    with pytest.raises(ValidationFailed) as raised:
        reported(StoredInstance, [json.loads(OLD_INSTANCE), "x"], field="instances")
    assert (raised.value.field, raised.value.message) == ("instances", "instances: each must be an object")
    with pytest.raises(ValidationFailed) as raised:
        reported(StoredRendition, {"not": "a list"}, field="renditions")
    assert raised.value.field == "renditions"


def test_a_workers_outputs_round_trip_and_bad_records_name_their_field() -> None:
    instance = StoredInstance.from_json(json.loads(OLD_INSTANCE))
    rendition = StoredRendition.from_json(json.loads(OLD_RENDITION))
    item = ItemOutputs(output_key="outputs/u/j/0_result.png", instances=[instance], renditions=[rendition])
    back = outputs_from_json("execute", outputs_to_json(item))
    assert isinstance(back, ItemOutputs)
    assert (list(back.instances), list(back.renditions)) == ([instance], [rendition])
    analysis = AnalysisOutputs([instance], stored_bytes=3)
    assert outputs_from_json("analyze", outputs_to_json(analysis)) == AnalysisOutputs([instance], 3)
    bad = json.loads(outputs_to_json(item))
    bad["renditions"][0]["width"] = "wide"
    with pytest.raises(ValidationFailed) as raised:
        outputs_from_json("execute", json.dumps(bad))
    assert raised.value.field == "renditions[0].width"


def test_a_lease_carries_the_items_records() -> None:
    item = WorkItem(0, "inputs/u/j/0.jpg", None, ["Wall"], [StoredInstance.from_json(json.loads(OLD_INSTANCE))])
    assert item_from_json(to_json(item)) == item
    assert json.loads(to_json(item))["instances"] == encode_all(item.instances or [])
    assert item_from_json(to_json(WorkItem(0, "k", None, None, None))).instances is None


def test_an_instance_without_a_mask_cannot_be_reused_by_execute() -> None:
    # A callback's instances carry no mask: execute must fail the item for good, not read a key "None".
    maskless = StoredInstance.from_json(json.loads(OLD_CALLBACK_INSTANCE))
    with pytest.raises(PermanentFailure, match="the stored Floor #1 has no mask"):
        read_instances(None, [maskless], ["Floor"])  # type: ignore[arg-type]  # never reached
    assert read_instances(None, [maskless], ["Wall"]) == {"Wall": []}  # type: ignore[arg-type]
