"""The documents generated from the .proto files: the OpenAPI document and the tables of
docs/contract.md (codes and states). ``scripts/gen_protos.py`` writes and checks them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from google.protobuf import descriptor_pb2

from gateway_rest.http_rules import RULES
from gateway_rest.openapi import build_document
from protos.s3.v1 import types_pb2
from server import contract
from server.config import Settings
from server.grpc_api.status import GRPC_STATUS
from server.plans import PLANS
from server.service import job_state

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "gateway_rest" / "openapi.json"
CONTRACT = ROOT / "docs" / "contract.md"

# Field numbers of descriptor.proto: FileDescriptorProto.message_type = 4, .enum_type = 5,
# .service = 6; DescriptorProto.field = 2, .nested_type = 3, .enum_type = 4;
# EnumDescriptorProto.value = 2; ServiceDescriptorProto.method = 2.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _ENUM_VALUE, _SERVICE_METHOD = 2, 2, 2


def _clean(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines())


def comments(descriptor_set: Path) -> dict[str, str]:
    """Leading (else trailing) comments of the s3.v1 messages, fields, enums, values and RPCs,
    by full name."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    out: dict[str, str] = {}
    for file in files.file:
        if file.package != "s3.v1":
            continue
        names: dict[tuple[int, ...], str] = {}
        for i, message in enumerate(file.message_type):
            names[(_FILE_MESSAGE, i)] = f"s3.v1.{message.name}"
            for j, field in enumerate(message.field):
                names[(_FILE_MESSAGE, i, _MESSAGE_FIELD, j)] = f"s3.v1.{message.name}.{field.name}"
        for i, enum in enumerate(file.enum_type):
            names[(_FILE_ENUM, i)] = f"s3.v1.{enum.name}"
            for j, value in enumerate(enum.value):
                names[(_FILE_ENUM, i, _ENUM_VALUE, j)] = f"s3.v1.{enum.name}.{value.name}"
        for i, service in enumerate(file.service):
            for j, method in enumerate(service.method):
                names[(_FILE_SERVICE, i, _SERVICE_METHOD, j)] = f"s3.v1.{service.name}.{method.name}"
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = location.leading_comments or location.trailing_comments
            if name is not None and text.strip():
                out[name] = _clean(text)
    return out


def openapi_text(notes: dict[str, str]) -> str:
    return json.dumps(build_document(notes), indent=2, ensure_ascii=False) + "\n"


def _codes_table(notes: dict[str, str]) -> str:
    rows = ["| code | HTTP | gRPC | meaning |", "|---|---|---|---|"]
    for value in types_pb2.ErrorCode.DESCRIPTOR.values[1:]:
        code = contract.wire_name(value, lower=False)
        note = notes.get(f"s3.v1.ErrorCode.{value.name}", "")
        rows.append(f"| `{code}` | {contract.HTTP_STATUS[code]} | {GRPC_STATUS[code].name} | {note} |")
    return "\n".join(rows)


def _states(notes: dict[str, str]) -> str:
    lines = []
    for enum in (types_pb2.JobStatus, types_pb2.ItemStatus, types_pb2.AnalysisState):
        names = ", ".join(f"`{v}`" for v in contract.vocabulary(enum.DESCRIPTOR, lower=True))
        lines.append(f"- **{enum.DESCRIPTOR.name}**: {names}. {notes.get(enum.DESCRIPTOR.full_name, '')}".rstrip())
    lines += ["", "Job transitions (`server/service/job_state.py`; any other is `INVALID_STATE`):", ""]
    lines += ["| from | to |", "|---|---|"]
    for state, targets in job_state.TRANSITIONS.items():
        lines.append(f"| `{state}` | {', '.join(f'`{t}`' for t in sorted(targets)) or '(terminal)'} |")
    return "\n".join(lines)


def _limits() -> str:
    defaults = Settings()
    rows = [
        "| plan | concurrent jobs | rule slots | items per job | stored bytes | live jobs |",
        "|---|---|---|---|---|---|",
    ]
    for plan in PLANS.values():
        gib = plan.max_stored_bytes / (1 << 30)
        rows.append(
            f"| {plan.name} | {plan.max_concurrency} | {plan.rule_slots} | {plan.max_batch} | {gib:g} GiB "
            f"| {plan.max_live_jobs} |"
        )
    rows += [
        "",
        f"Defaults: a new user gets {defaults.credits.starting_credits} credits (`S3_STARTING_CREDITS`; the first "
        f"account of a `device_hash` only), an item costs {defaults.credits.credits_per_item} (`S3_CREDITS_PER_ITEM`), an analysis one credit "
        f"per started group of {defaults.credits.analyze_items_per_credit} photos (`S3_ANALYZE_ITEMS_PER_CREDIT`).",
    ]
    return "\n".join(rows)


def _idempotency() -> str:
    """The routes that take ``Idempotency-Key``: those of the RPCs marked ``(idempotency_key)``."""
    keyed = [f"`{rule.method} {rule.path}`" for rule in RULES.values() if rule.idempotency_key]
    return "Routes that take `Idempotency-Key`: " + ", ".join(keyed) + "."


_BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n).*?(<!-- end generated -->)", re.S)


def contract_text(notes: dict[str, str]) -> str:
    """docs/contract.md with its generated blocks filled in; the prose around them is kept."""
    parts = {
        "codes": _codes_table(notes),
        "states": _states(notes),
        "limits": _limits(),
        "idempotency": _idempotency(),
    }
    text = CONTRACT.read_text()
    return _BLOCK.sub(lambda m: f"{m.group(1)}{parts[m.group(2)]}\n{m.group(3)}", text)
