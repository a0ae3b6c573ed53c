"""Fuzzing of the gRPC JobService: hypothesis builds random request messages from the proto
descriptors (every field type, maps, repeated fields, nested messages, google.protobuf.Struct) and
sends them to every RPC over a real socket, with good, missing and forged credentials.

Each call must succeed or fail with a contract code in the ``s3-error-code`` trailing metadata and
the gRPC status that code maps to; never INTERNAL or UNKNOWN. Afterwards the server still answers
and the credit invariant holds.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from server.errors import ALL_CODES
from server.grpc_api.server import build_grpc_server
from server.grpc_api.status import ERROR_CODE_METADATA_KEY, GRPC_STATUS
from tests.support.invariants import check_invariants
from tests.support.stack import Stack, jpeg_bytes, make_stack

pytestmark = pytest.mark.integration

EXAMPLES_PER_RPC = 40
MAX_DEPTH = 3

F = FieldDescriptor
_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}

# Protobuf strings must be valid UTF-8: surrogates cannot even be put in a message.
_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


@dataclass
class Served:
    stack: Stack
    stub: jobs_pb2_grpc.JobServiceStub
    token: str
    words: list[str]
    """Strings that reach past the first check: the caller's real ids, preset and concept names."""


def _json_value(depth: int) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
    if depth >= MAX_DEPTH:
        return scalars
    return (
        scalars
        | st.lists(_json_value(depth + 1), max_size=3)
        | st.dictionaries(_TEXT, _json_value(depth + 1), max_size=3)
    )


def _struct(depth: int) -> st.SearchStrategy[struct_pb2.Struct]:
    def build(values: dict[str, Any]) -> struct_pb2.Struct:
        s = struct_pb2.Struct()
        s.update(values)
        return s

    return st.dictionaries(_TEXT, _json_value(depth + 1), max_size=4).map(build)


def _scalar(field: FieldDescriptor, words: list[str]) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        return st.integers(lo, hi) | st.integers(-3, 12).filter(lambda v: lo <= v <= hi)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return _TEXT | st.sampled_from(words)
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_DOUBLE:
        return st.floats()
    if t == F.TYPE_FLOAT:
        return st.floats(width=32)
    if t == F.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise AssertionError(f"unhandled field type {t} of {field.full_name}")


def message_strategy(descriptor: Descriptor, words: list[str], depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor`` with a random subset of fields set to random values."""
    if descriptor.full_name == "google.protobuf.Struct":
        return _struct(depth)
    cls = GetMessageClass(descriptor)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if depth >= MAX_DEPTH and field.type == F.TYPE_MESSAGE:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            value = (
                message_strategy(value_field.message_type, words, depth + 1)
                if value_field.message_type is not None
                else _scalar(value_field, words)
            )
            parts[field.name] = st.dictionaries(_scalar(key_field, words), value, max_size=3)
            continue
        one = (
            message_strategy(field.message_type, words, depth + 1)
            if field.message_type is not None
            else _scalar(field, words)
        )
        parts[field.name] = st.lists(one, max_size=3) if field.is_repeated else one

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in parts.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            target = getattr(message, name)
            if isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif isinstance(value, list):
                for v in value:
                    if isinstance(v, Message):
                        target.add().CopyFrom(v)
                    else:
                        target.append(v)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return build()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root: Path = tmp_path_factory.mktemp("fuzz-grpc")
    stack = make_stack(f"sqlite:///{root / 's3.db'}", root / "data")
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=8)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    try:
        token = stub.CreateAnonUser(jpb.CreateAnonUserRequest()).token
        md = (("authorization", f"Bearer {token}"),)
        created = stub.CreateJob(jpb.CreateJobRequest(preset="interior", item_count=2), metadata=md)
        for u in created.upload_urls:
            stack.store.put(u.key, jpeg_bytes(seed=u.idx), content_type="image/jpeg")
        rule = jpb.CreateRuleRequest(name="r", preset_id="interior")
        rule.concepts["Wall"].action = "blur"
        rule_id = stub.CreateRule(rule, metadata=md).rule_id
        words = [created.job_id, rule_id, "interior", "seller", "Wall", "Floor", "recolor", "white", "done", "failed"]
        # Refresh tokens of their own sessions, so RefreshSession is reached past "not a token" too.
        words += [stub.CreateAnonUser(jpb.CreateAnonUserRequest()).refresh_token for _ in range(5)]
        yield Served(stack, stub, token, words)
    finally:
        channel.close()
        server.stop(1.0)
        stack.db.dispose()


def _credentials(served: Served, stack: Stack) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    good = (
        ("authorization", f"Bearer {served.token}"),
        ("x-callback-secret", str(stack.settings.auth.callback_secret)),
    )
    return st.sampled_from(
        [
            good,
            good,
            good,
            (),
            (("authorization", "Bearer not-a-token"), ("x-callback-secret", "wrong")),
            (("authorization", served.token),),
        ]
    )


def _call(served: Served, name: str, request: Message, metadata: tuple[tuple[str, str], ...]) -> str:
    method = getattr(served.stub, name)
    try:
        if name == "WatchJob":
            stream = method(request, metadata=metadata, timeout=10)
            try:
                next(stream)  # the job's current state comes first; that is enough
            finally:
                stream.cancel()
        else:
            method(request, metadata=metadata, timeout=10)
    except grpc.RpcError as e:
        status = e.code()
        if status == grpc.StatusCode.CANCELLED and name == "WatchJob":
            return "ok"
        trailing = {m.key: m.value for m in e.trailing_metadata() or ()}
        raw = trailing.get(ERROR_CODE_METADATA_KEY)
        code = raw.decode() if isinstance(raw, bytes) else str(raw)
        assert status not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (name, request, e)
        assert code in ALL_CODES and code != "INTERNAL", (name, request, status, trailing)
        assert GRPC_STATUS[code] == status, (name, code, status)
        return str(code)
    return "ok"


def _fuzz_rpc(served: Served, name: str, input_type: Descriptor, tally: Counter[str]) -> None:
    @given(request=message_strategy(input_type, served.words), metadata=_credentials(served, served.stack))
    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(request: Message, metadata: tuple[tuple[str, str], ...]) -> None:
        tally[f"{name} {_call(served, name, request, metadata)}"] += 1

    fuzz()


def test_every_rpc_answers_a_contract_code_or_succeeds(served: Served) -> None:
    methods = jpb.DESCRIPTOR.services_by_name["JobService"].methods
    tally: Counter[str] = Counter()
    for method in methods:
        _fuzz_rpc(served, method.name, method.input_type, tally)
    total = sum(tally.values())
    print("gRPC fuzz:", total, "calls", json.dumps(dict(sorted(tally.items()))))
    assert total >= len(methods) * EXAMPLES_PER_RPC // 2
    # Each RPC was reached past authentication at least once.
    for method in methods:
        assert any(k.startswith(method.name + " ") and "AUTH" not in k and "TOKEN" not in k for k in tally), method.name

    assert served.stub.GetHealth(jpb.GetHealthRequest(), timeout=10).ok
    check_invariants(served.stack.db)
