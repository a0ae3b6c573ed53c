"""WorkerService messages <-> the queue's and the pipeline's own types, for both ends of the API
(the replica's servicer and the ``--api`` worker's client)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from protos.s3.v1 import worker_pb2
from server.errors import ValidationFailed
from server.item_records import StoredInstance, StoredRendition, encode_all, reported
from server.service.settle import AnalysisOutputs, ItemOutputs
from server.work.queue import Claim, Stage

WORKER_STAGES: tuple[Stage, ...] = ("analyze", "execute")
"""What a worker behind the API is handed: packaging reads every item of a job, so it stays on the
replicas (which hold the database and the store)."""


def claim_to_proto(claim: Claim) -> worker_pb2.WorkClaim:
    return worker_pb2.WorkClaim(
        stage=claim.stage, job_id=claim.job_id, idx=claim.idx, attempt=claim.attempt, owner=claim.owner
    )


def claim_from_proto(msg: worker_pb2.WorkClaim) -> Claim:
    if msg.stage == "analyze":
        return Claim("analyze", msg.job_id, msg.idx, msg.attempt, msg.owner)
    if msg.stage == "execute":
        return Claim("execute", msg.job_id, msg.idx, msg.attempt, msg.owner)
    raise ValidationFailed(f"claim.stage: must be one of {', '.join(WORKER_STAGES)}", field="claim.stage")


def outputs_to_json(outputs: ItemOutputs | AnalysisOutputs) -> str:
    doc = {f.name: getattr(outputs, f.name) for f in fields(outputs)}
    doc["instances"] = encode_all(outputs.instances)
    if isinstance(outputs, ItemOutputs):
        doc["renditions"] = encode_all(outputs.renditions)
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def outputs_from_json(stage: Stage, text: str) -> ItemOutputs | AnalysisOutputs:
    """The outputs a worker reported for a claim of ``stage``; ``ValidationFailed`` if they are not
    that stage's shape (naming the bad record's field, ``instances[2].score``)."""
    cls: type[ItemOutputs] | type[AnalysisOutputs] = ItemOutputs if stage == "execute" else AnalysisOutputs
    try:
        doc: Any = json.loads(text)
    except ValueError as e:
        raise ValidationFailed(f"outputs_json: not JSON: {e}", field="outputs_json") from e
    names = {f.name for f in fields(cls)}
    if not isinstance(doc, dict) or not set(doc) <= names:
        raise ValidationFailed(f"outputs_json: not {cls.__name__} (fields {sorted(names)})", field="outputs_json")
    if "instances" in doc:
        doc["instances"] = reported(StoredInstance, doc["instances"], field="instances")
    if "renditions" in doc:
        doc["renditions"] = reported(StoredRendition, doc["renditions"], field="renditions")
    try:
        return cls(**doc)
    except TypeError as e:
        raise ValidationFailed(f"outputs_json: {e}", field="outputs_json") from e
