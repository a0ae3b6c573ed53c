"""The replica's side of the WorkerService: claims, leases and results of workers that hold no
database or storage credentials.

Everything goes through the queue's public methods; what this adds is what a remote worker cannot
be trusted or able to do itself: the claim's job and item snapshot, presigned URLs limited to the
claimed item's own objects (and only while its lease holds), and a check of the keys it reports.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from server.config.sections import InferenceConfig
from server.db.engine import Database
from server.errors import Forbidden, InvalidState, ValidationFailed
from server.pipeline import load_work
from server.service.settle import AnalysisOutputs, ItemOutputs
from server.service.validation import storable
from server.storage import keys
from server.storage.port import ObjectStore, PresignedRequest
from server.work import PermanentFailure, WorkItem, WorkJob
from server.work.queue import Claim, WorkQueue

log = logging.getLogger(__name__)

MAX_OBJECTS_PER_CALL = 256
_READ_ONLY_FOLDERS = ("inputs", "sets")
"""A worker reads an item's photo but never writes it, and never touches a job's set."""


@dataclass(frozen=True)
class SignedObject:
    key: str
    get_url: str
    put: PresignedRequest | None = None


@dataclass(frozen=True)
class WorkLease:
    """A claim handed to a remote worker, with what it needs to work on it."""

    claim: Claim
    job: WorkJob
    item: WorkItem
    reads: tuple[SignedObject, ...]


def item_key(job: WorkJob, idx: int, key: str, *, write: bool) -> str:
    """``key`` if it is one of item ``idx``'s own objects (and writable, for ``write``), else
    :class:`Forbidden`: a worker's URLs and reports never reach another item, job or user."""
    try:
        keys.validate_key(key)
    except ValueError as e:
        raise ValidationFailed(f"object key: {e}", field="key") from e
    for prefix in keys.job_prefixes(job.user_id, job.id):
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            folder = prefix.split("/", 1)[0]
            if write and folder in _READ_ONLY_FOLDERS:
                break
            if rest.startswith((f"{idx}_", f"{idx}/", f"{idx}.")):
                return key
            break
    raise Forbidden(f"object {key} is not {'writable for' if write else 'part of'} item {idx} of job {job.id}")


class WorkLeases:
    def __init__(self, db: Database, store: ObjectStore, queue: WorkQueue, inference: InferenceConfig) -> None:
        self._db = db
        self._store = store
        self._queue = queue
        # Long enough for an item's whole attempt; the lease, not the URL, is what bounds the work.
        self._url_ttl_s = max(int(inference.inference_timeout_s) * 2, 300)

    # -- claims ---------------------------------------------------------------------------------
    def claim(self, owner: str) -> WorkLease | Claim | None:
        """The next work for ``owner``: a lease for a remote worker, a package claim for the
        replica itself to run, or None when there is none."""
        while True:
            claim = self._queue.claim(owner)
            if claim is None or claim.stage == "package":
                return claim
            try:
                work = load_work(self._db, claim)
            except PermanentFailure as e:
                self._queue.fail(claim, e.message, retryable=False)
                continue
            masks = (r.mask_key for r in work.item.instances or [] if r.mask_key is not None)
            reads = [work.item.input_key, *masks]
            return WorkLease(claim, work.job, work.item, tuple(self._signed(key, None) for key in reads))

    @property
    def generation(self) -> int:
        """Read before a claim that may come back empty; pass to :meth:`wait_for_work`."""
        return self._queue.generation

    async def wait_for_work(self, since: int) -> None:
        """Until work may be claimable (committed anywhere, on PostgreSQL) or the queue's fallback."""
        await self._queue.wait_for_work(since, self._queue.fallback_s)

    def heartbeat(self, claim: Claim) -> bool:
        return self._queue.heartbeat(claim)

    def release(self, claim: Claim) -> None:
        self._queue.release(claim)

    # -- objects --------------------------------------------------------------------------------
    def sign(self, claim: Claim, objects: Sequence[tuple[str, str | None]]) -> list[SignedObject]:
        """GET URLs for ``(key, None)``, GET and PUT URLs for ``(key, content_type)``."""
        job = self._held(claim, len(objects))
        return [
            self._signed(item_key(job, claim.idx, key, write=content_type is not None), content_type)
            for key, content_type in objects
        ]

    def discard(self, claim: Claim, keys_: Sequence[str]) -> None:
        job = self._held(claim, len(keys_))
        for key in keys_:
            self._store.delete(item_key(job, claim.idx, key, write=True))

    def _held(self, claim: Claim, count: int) -> WorkJob:
        if count > MAX_OBJECTS_PER_CALL:
            raise ValidationFailed(f"objects: at most {MAX_OBJECTS_PER_CALL} per call", field="objects")
        # The heartbeat is the lease check (and a sign of life worth recording).
        if not self._queue.heartbeat(claim):
            raise InvalidState(f"the lease on {claim.job_id}/{claim.idx} is gone")
        return load_work(self._db, claim).job

    def _signed(self, key: str, content_type: str | None) -> SignedObject:
        get_url = self._store.presign_get(key, expires_s=self._url_ttl_s)
        put = (
            None
            if content_type is None
            else self._store.presign_put(key, content_type=content_type, expires_s=self._url_ttl_s)
        )
        return SignedObject(key, get_url, put)

    # -- results --------------------------------------------------------------------------------
    def report(self, claim: Claim, outputs: ItemOutputs | AnalysisOutputs) -> bool:
        """Record a worker's outputs; False when the lease was gone (nothing changed).

        The records were decoded at the edge (``worker_convert``); what is left to check is that
        every key they name is the claimed item's own, and the JSON objects they carry."""
        job = load_work(self._db, claim).job
        instances = list(outputs.instances)
        # A worker's instance without a mask is refused as an empty key: execute reads the masks.
        mask_keys = [r.mask_key or "" for r in instances]
        if isinstance(outputs, AnalysisOutputs):
            self._own(job, claim.idx, mask_keys)
            return self._queue.complete_analysis(claim, instances, stored_bytes=_bytes(outputs.stored_bytes))
        storable(outputs.protect_check, "protect_check")
        for i, r in enumerate(outputs.renditions):
            storable(r.protect, f"renditions[{i}].protect")
        written = [outputs.output_key, *([outputs.preview_key] if outputs.preview_key else [])]
        written += [r.key for r in outputs.renditions]
        self._own(job, claim.idx, [*written, *mask_keys])
        _bytes(outputs.stored_bytes)
        return self._queue.complete_item(claim, outputs)

    def fail(self, claim: Claim, message: str, *, retryable: bool) -> bool:
        if not self._queue.heartbeat(claim):
            return False
        self._queue.fail(claim, message[:2000], retryable=retryable)
        return True

    @staticmethod
    def _own(job: WorkJob, idx: int, written: Iterable[str]) -> None:
        for key in written:
            item_key(job, idx, key, write=True)


def _bytes(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationFailed("stored_bytes: must be a non-negative integer", field="stored_bytes")
    return value
