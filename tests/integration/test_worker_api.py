"""The WorkerService over a real socket, on the real queue and store: the worker token guards every
method, a claim's URLs reach only its own item, a dropped Lease stream gives its claims back at
once, and a report arriving after that is refused and charges nothing."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from protos.s3.v1 import worker_pb2, worker_pb2_grpc
from server.grpc_api.server import GrpcServer, build_grpc_server
from server.grpc_api.worker_convert import outputs_to_json
from server.grpc_api.worker_servicer import WorkerServicer
from server.service.settle import ItemOutputs
from server.service.work_leases import WorkLeases
from server.storage import keys
from server.work.queue import Claim, WorkQueue
from tests.support.grpc_calls import cancel
from tests.support.invariants import check_invariants
from tests.support.pipeline import job_items, queued_job, spend_refs
from tests.support.processes import wait_for
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration

TOKEN = "worker-" + "w" * 40
CALLBACK_SECRET = "callback-" + "c" * 40  # tests/support/stack.py's
RELEASE_BOUND_S = 3.0


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[Stack, GrpcServer, list[Claim]]]:
    stack = make_stack(database_url, tmp_path / "data", worker_token=TOKEN, lease_s=30.0)
    packaged: list[Claim] = []

    async def package(claim: Claim) -> None:
        packaged.append(claim)

    leases = WorkLeases(stack.db, stack.store, WorkQueue(stack.db, stack.settings.queue), stack.settings.inference)
    workers = WorkerServicer(stack.services.worker_auth, leases, package)
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", workers=workers)
    server.start()
    try:
        yield stack, server, packaged
    finally:
        server.stop(1.0)
        stack.db.dispose()


def _stub(server: GrpcServer) -> tuple[grpc.Channel, worker_pb2_grpc.WorkerServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return channel, worker_pb2_grpc.WorkerServiceStub(channel)


def _md(token: str = TOKEN) -> tuple[tuple[str, str], ...]:
    return (("x-worker-token", token),)


def _lease(
    stub: worker_pb2_grpc.WorkerServiceStub, name: str = "w", md: tuple[tuple[str, str], ...] | None = None
) -> grpc.CallIterator[worker_pb2.WorkLease]:
    """A Lease stream of one claim at a time (with the worker token unless ``md`` says otherwise)."""
    return stub.Lease(worker_pb2.LeaseRequest(worker_name=name, capacity=1), metadata=_md() if md is None else md)


def test_every_method_refuses_a_missing_wrong_or_callback_token(
    served: tuple[Stack, GrpcServer, list[Claim]],
) -> None:
    stack, server, _ = served
    queued_job(stack, 1)
    channel, stub = _stub(server)
    claim = worker_pb2.WorkClaim(stage="execute", job_id="x", idx=0, attempt=1, owner="o")
    calls: list[Callable[[tuple[tuple[str, str], ...]], object]] = [
        lambda md: next(iter(_lease(stub, md=md))),
        lambda md: stub.Heartbeat(claim, metadata=md),
        lambda md: stub.SignObjects(worker_pb2.SignObjectsRequest(claim=claim), metadata=md),
        lambda md: stub.DiscardObjects(worker_pb2.DiscardObjectsRequest(claim=claim), metadata=md),
        lambda md: stub.ReportResult(worker_pb2.ReportResultRequest(claim=claim, outputs_json="{}"), metadata=md),
    ]
    assert len(calls) == len(worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].methods)
    with channel:
        for call in calls:
            for md in ((), _md("w" * 47), _md(CALLBACK_SECRET)):
                with pytest.raises(grpc.RpcError) as caught:
                    call(md)
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, caught.value.details()
    # Nothing was claimed by any of those calls.
    assert all(i.lease_owner is None for i in job_items(stack.db, queued_job(stack, 1)[1]))


def test_a_dropped_stream_gives_its_claim_back_and_a_late_report_is_refused(
    served: tuple[Stack, GrpcServer, list[Claim]],
) -> None:
    stack, server, _ = served
    user, job_id = queued_job(stack, 2)
    channel, stub = _stub(server)
    with channel:
        stream = _lease(stub, "doomed")
        lease = next(iter(stream))
        claim = lease.claim
        assert (claim.stage, claim.job_id) == ("execute", job_id)
        assert claim.owner.startswith("api:doomed:")
        # The photo's GET URL works and is the item's own; the snapshot is the item's.
        (photo,) = lease.objects
        assert photo.key == keys.input_key(user, job_id, claim.idx) and not photo.put_url
        # Capacity 1: no second claim while the first is unreported.
        assert job_items(stack.db, job_id)[1 - claim.idx].lease_owner is None

        # A URL for another item's object, or the photo for writing, is refused.
        other = worker_pb2.ObjectToSign(key=keys.output_key(user, job_id, 1 - claim.idx), content_type="image/png")
        source = worker_pb2.ObjectToSign(key=photo.key, content_type="image/jpeg")
        for wanted in (other, source):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SignObjects(worker_pb2.SignObjectsRequest(claim=claim, objects=[wanted]), metadata=_md())
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        own = worker_pb2.ObjectToSign(key=keys.output_key(user, job_id, claim.idx), content_type="image/png")
        signed = stub.SignObjects(worker_pb2.SignObjectsRequest(claim=claim, objects=[own]), metadata=_md())
        assert signed.objects[0].put_url and signed.objects[0].get_url

        assert job_items(stack.db, job_id)[claim.idx].lease_owner == claim.owner
        cancel(stream)  # the worker is gone
        dropped_at = time.monotonic()
        wait_for(
            lambda: job_items(stack.db, job_id)[claim.idx].lease_owner is None,
            timeout_s=RELEASE_BOUND_S,
            what="the dropped stream's claim to be released",
        )
        released_s = time.monotonic() - dropped_at
        item = job_items(stack.db, job_id)[claim.idx]
        assert (item.status, item.attempts) == ("queued", 0)  # given back untouched, no attempt spent

        # The dead worker's result arrives late: refused by the lease check, nothing charged.
        outputs = ItemOutputs(output_key=keys.output_key(user, job_id, claim.idx))
        late = stub.ReportResult(
            worker_pb2.ReportResultRequest(claim=claim, outputs_json=outputs_to_json(outputs)), metadata=_md()
        )
        assert not late.recorded
        assert not stub.Heartbeat(claim, metadata=_md()).alive
    assert spend_refs(stack.db, job_id) == []
    assert job_items(stack.db, job_id)[claim.idx].status == "queued"
    check_invariants(stack.db)
    print(f"claim released {released_s * 1000:.0f} ms after the stream was cancelled")


def test_a_report_naming_another_items_key_is_refused(served: tuple[Stack, GrpcServer, list[Claim]]) -> None:
    stack, server, _ = served
    user, job_id = queued_job(stack, 2)
    channel, stub = _stub(server)
    with channel:
        stream = _lease(stub)
        claim = next(iter(stream)).claim
        foreign = ItemOutputs(output_key=keys.output_key(user, job_id, 1 - claim.idx))
        with pytest.raises(grpc.RpcError) as caught:
            stub.ReportResult(
                worker_pb2.ReportResultRequest(claim=claim, outputs_json=outputs_to_json(foreign)), metadata=_md()
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        own = ItemOutputs(output_key=keys.output_key(user, job_id, claim.idx))
        done = stub.ReportResult(
            worker_pb2.ReportResultRequest(claim=claim, outputs_json=outputs_to_json(own)), metadata=_md()
        )
        assert done.recorded
        cancel(stream)
    assert spend_refs(stack.db, job_id) == [f"item:{claim.idx}"]
    check_invariants(stack.db)


def test_a_report_with_malformed_records_is_refused_naming_the_field(
    served: tuple[Stack, GrpcServer, list[Claim]],
) -> None:
    stack, server, _ = served
    user, job_id = queued_job(stack, 1)
    channel, stub = _stub(server)
    with channel:
        stream = _lease(stub)
        claim = next(iter(stream)).claim
        own = keys.output_key(user, job_id, claim.idx)
        good = {"concept": "Wall", "number": 1, "score": 0.5, "box": [0, 0, 1, 1], "area": 1}
        mask = {**good, "mask_key": keys.instance_mask_key(user, job_id, claim.idx, "Wall", 1)}
        bad = [
            (
                {"output_key": own, "instances": [mask, {**good, "score": "high"}]},
                "instances[1].score: must be a number",
            ),
            ({"output_key": own, "instances": [mask, "Wall"]}, "instances: each must be an object"),
            ({"output_key": own, "instances": [{**mask, "box": [0, 1]}]}, "instances[0].box: must be 4 numbers"),
            ({"output_key": own, "renditions": [{"key": own}]}, "renditions[0].bytes: is required"),
            ({"output_key": own, "instances": [good]}, "object key:"),  # execute reads the masks
        ]
        for outputs, message in bad:
            request = worker_pb2.ReportResultRequest(claim=claim, outputs_json=json.dumps(outputs))
            with pytest.raises(grpc.RpcError) as caught:
                stub.ReportResult(request, metadata=_md())
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, outputs
            assert (caught.value.details() or "").startswith(message), caught.value.details()
        assert job_items(stack.db, job_id)[claim.idx].status != "done"
        request = worker_pb2.ReportResultRequest(
            claim=claim, outputs_json=json.dumps({"output_key": own, "instances": [mask]})
        )
        assert stub.ReportResult(request, metadata=_md()).recorded
        cancel(stream)
    [item] = job_items(stack.db, job_id)
    assert [i.mask_key for i in item.instances or []] == [mask["mask_key"]]
    check_invariants(stack.db)


class _CountingQueue(WorkQueue):
    claims = 0

    def claim(self, owner: str) -> Claim | None:
        self.claims += 1
        return super().claim(owner)


def test_an_idle_stream_waits_for_work_instead_of_polling(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", worker_token=TOKEN, lease_s=30.0)
    queue = _CountingQueue(stack.db, stack.settings.queue)

    async def package(claim: Claim) -> None:
        return None

    workers = WorkerServicer(
        stack.services.worker_auth, WorkLeases(stack.db, stack.store, queue, stack.settings.inference), package
    )
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", workers=workers)
    server.start()
    channel, stub = _stub(server)
    try:
        with channel:
            stream = _lease(stub, "idle")
            leases = iter(stream)
            wait_for(lambda: queue.claims >= 1, timeout_s=5.0, what="the stream's first claim")
            idle_s = 2.0
            time.sleep(idle_s)
            # Polling every 0.25 s would have made 8 claims; the queue's fallback claim (every 5 s on
            # PostgreSQL, 1 s on SQLite, where processes have no notification) allows the first
            # claim, one per fallback period and one for a period ending at the edge of the window.
            assert queue.claims <= 2 + math.ceil(idle_s / queue.fallback_s), queue.claims
            _, job_id = queued_job(stack, 1)
            queued_at = time.monotonic()
            lease = next(leases)
            woke_s = time.monotonic() - queued_at
            assert lease.claim.job_id == job_id
            assert woke_s < queue.fallback_s / 2, woke_s  # woken by the commit, not by the fallback
            cancel(stream)
    finally:
        server.stop(1.0)
        stack.db.dispose()
