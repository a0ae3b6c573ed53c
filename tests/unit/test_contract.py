"""The contract stated in the proto (codes, statuses, states, routes) is what the Python side uses."""

from __future__ import annotations

import typing
import uuid

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import EnumDescriptor

from applier import templates
from gateway_rest.errors import HTTP_STATUS
from gateway_rest.routes import api_endpoints
from protos.s3.v1 import admin_pb2, jobs_pb2, options_pb2, types_pb2, worker_pb2
from server import contract, images, wire_enums
from server.db.tables import JobItemRow
from server.grpc_api.status import GRPC_STATUS
from server.metrics import state as metric_state
from server.plans import PLANS
from server.service import item_state, job_state, job_views, webhooks


def test_job_statuses_of_the_state_machine_are_the_proto_enum() -> None:
    assert set(job_state.TRANSITIONS) == set(contract.JOB_STATUSES)
    assert set(contract.JOB_STATUSES) >= job_state.TERMINAL


def test_item_statuses_are_the_proto_enum() -> None:
    assert tuple(metric_state.ITEM_STATUSES) == contract.ITEM_STATUSES


def test_python_state_enums_are_the_proto_enums() -> None:
    # The typed enums are generated from the proto (scripts/wire_enums.py): equal, member for member
    # and in order, and what the state machines use.
    assert tuple(wire_enums.JobStatus) == contract.JOB_STATUSES
    assert tuple(wire_enums.ItemStatus) == contract.ITEM_STATUSES
    assert tuple(wire_enums.AnalysisState) == contract.ANALYSIS_STATES
    assert tuple(wire_enums.WebhookDeliveryState) == contract.WEBHOOK_DELIVERY_STATES
    # Looked up in each module's namespace: the state machines import the enums, they do not re-export them.
    assert vars(job_state)["JobStatus"] is wire_enums.JobStatus
    assert vars(item_state)["ItemStatus"] is wire_enums.ItemStatus


def test_the_generated_enums_follow_the_proto() -> None:
    from scripts import wire_enums as generator

    text = generator.text({})
    assert 'class JobStatus(StrEnum):\n    CREATED = "created"\n' in text
    # A value added to the proto is a member of the generated enum (and the committed one stale).
    package = f"grown{uuid.uuid4().hex}"
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
    grown = file.enum_type.add()
    types_pb2.JobStatus.DESCRIPTOR.CopyToProto(grown)
    grown.value.add(name="JOB_STATUS_ARCHIVED", number=99)
    pool = descriptor_pool.Default()
    pool.Add(file)
    enum = pool.FindEnumTypeByName(f"{package}.JobStatus")
    assert 'ARCHIVED = "archived"\n    """Kept, read only."""' in generator._enum(
        enum, {f"{package}.JobStatus.JOB_STATUS_ARCHIVED": "kept, read only"}
    )


def test_plans_fits_formats_and_webhook_events_are_the_proto_enums() -> None:
    # Written out where a type or a table needs them (the applier's literals for mypy, the plans'
    # limits); the proto enums are what the OpenAPI document states, and these stay equal to them.
    assert tuple(PLANS) == contract.PLANS == ("free", "pro")
    assert typing.get_args(templates.Fit) == contract.TEMPLATE_FITS
    assert typing.get_args(templates.Format) == contract.TEMPLATE_FORMATS
    assert webhooks.EVENT_TYPES == contract.WEBHOOK_EVENTS
    assert contract.WEBHOOK_EVENTS == ("item.done", "item.failed", "job.done", "job.failed", "job.canceled")


def _vocabulary_fields() -> dict[str, str]:
    """``Message.field`` -> the enum its ``(values_of)`` names, over every file of the contract."""
    found = {}
    for module in (admin_pb2, jobs_pb2, types_pb2, worker_pb2):
        pending = list(module.DESCRIPTOR.message_types_by_name.values())
        while pending:
            message = pending.pop()
            pending.extend(message.nested_types)
            for field in message.fields:
                options = field.GetOptions()
                if options.HasExtension(options_pb2.values_of):
                    found[f"{message.full_name}.{field.name}"] = options.Extensions[options_pb2.values_of]
    return found


def test_every_vocabulary_names_an_enum_and_stays_a_string_on_the_wire() -> None:
    fields = _vocabulary_fields()
    # The admin API's plan names the same enum as the public API's, without changing its wire type.
    assert fields["s3.v1.SetPlanRequest.plan"] == fields["s3.v1.UserState.plan"] == "s3.v1.Plan"
    for name, enum in fields.items():
        assert contract.enum_of_values(enum).values, name
        message, field = name.rsplit(".", 1)
        descriptor = types_pb2.DESCRIPTOR.pool.FindMessageTypeByName(message).fields_by_name[field]
        assert descriptor.type == descriptor.TYPE_STRING, name
    with pytest.raises(KeyError):
        contract.enum_of_values("s3.v1.Plans")  # a misspelt vocabulary is caught, not ignored


def test_delivery_states_and_content_types_are_the_proto_enums() -> None:
    assert contract.WEBHOOK_DELIVERY_STATES == ("pending", "delivered", "failed")
    # The formats confirm-upload decodes are the ones an upload may declare.
    assert tuple(images.CONTENT_TYPES.values()) == contract.CONTENT_TYPES == ("image/jpeg", "image/png", "image/webp")


def test_every_analysis_state_the_views_report_is_in_the_proto_enum() -> None:
    seen = {job_views.analysis_state(JobItemRow(analysis_state=state)) for state in wire_enums.AnalysisState}
    assert seen == set(contract.ANALYSIS_STATES)


def test_wire_names_drop_the_enum_prefix() -> None:
    assert contract.ERROR_CODES[0] == "AUTH_REQUIRED" and "IDEMPOTENCY_MISMATCH" in contract.ERROR_CODES
    assert contract.JOB_STATUSES == ("created", "uploaded", "queued", "running", "done", "failed", "canceled")
    assert contract.ANALYSIS_STATES == ("none", "pending", "done", "failed")


def test_status_tables_come_from_the_enum_options() -> None:
    for value in types_pb2.ErrorCode.DESCRIPTOR.values[1:]:
        code = contract.wire_name(value, lower=False)
        options = value.GetOptions()
        assert HTTP_STATUS[code] == options.Extensions[options_pb2.http_status]
        assert GRPC_STATUS[code].value[0] == options.Extensions[options_pb2.grpc_status]
    assert GRPC_STATUS["QUOTA_EXCEEDED"] is grpc.StatusCode.RESOURCE_EXHAUSTED


def _error_enum(value_options: descriptor_pb2.EnumValueOptions) -> EnumDescriptor:
    """An ErrorCode-like enum in a file of its own (a fresh package per call: the pool is global)."""
    package = f"broken{uuid.uuid4().hex}"
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
    file.dependency.append("s3/v1/options.proto")
    enum = file.enum_type.add(name="ErrorCode")
    enum.value.add(name="ERROR_CODE_UNSPECIFIED", number=0)
    enum.value.add(name="ERROR_CODE_LOST", number=1, options=value_options)
    pool = descriptor_pool.Default()
    pool.Add(file)
    return pool.FindEnumTypeByName(f"{package}.ErrorCode")


def test_a_code_without_its_grpc_status_is_refused() -> None:
    both = descriptor_pb2.EnumValueOptions()
    both.Extensions[options_pb2.http_status] = 400
    both.Extensions[options_pb2.grpc_status] = 3
    assert contract._status_options(_error_enum(both)) == ({"LOST": 400}, {"LOST": 3})
    only_http = descriptor_pb2.EnumValueOptions()
    only_http.Extensions[options_pb2.http_status] = 400
    with pytest.raises(ValueError, match="grpc_status"):
        contract._status_options(_error_enum(only_http))


def _annotated_routes() -> set[tuple[str, str]]:
    routes = set()
    for method in jobs_pb2.DESCRIPTOR.services_by_name["JobService"].methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        assert verb is not None, f"{method.name} has no google.api.http route"
        routes.add((verb.upper(), getattr(rule, verb)))
    return routes


def test_the_rest_routes_are_the_http_annotations_of_the_job_service() -> None:
    served = {(method, path) for path, _, endpoints in api_endpoints() for method in endpoints}
    assert served == _annotated_routes()


def test_an_rpc_without_a_handler_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway_rest import routes

    real = routes._endpoints

    def missing_one() -> dict[str, routes.Endpoint]:
        endpoints = real()
        del endpoints["CancelJob"]
        return endpoints

    monkeypatch.setattr(routes, "_endpoints", missing_one)
    with pytest.raises(ValueError, match="CancelJob"):
        api_endpoints()


def test_an_rpc_not_marked_idempotency_key_is_never_run_under_a_key() -> None:
    from server.grpc_api.servicer import JobService

    servicer = JobService.__new__(JobService)  # the guard runs before the servicer touches anything
    with pytest.raises(RuntimeError, match=r"GetMe is not marked \(idempotency_key\)"):
        servicer._once(
            None,  # type: ignore[arg-type]  # no context: the guard refuses before reading one
            "u",
            "GetMe",
            jobs_pb2.GetMeRequest(),
            jobs_pb2.GetMeRequest.FromString,
            lambda _: jobs_pb2.GetMeRequest(),
        )
