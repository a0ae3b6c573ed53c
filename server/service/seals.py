"""Closing a job's upload URLs once its photos are settled (confirm-upload, a user's or an
operator's cancel): see ``ObjectStore.seal``."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from server.errors import StorageUnavailable
from server.storage.port import ObjectStore

log = logging.getLogger(__name__)


def seal_inputs(store: ObjectStore, job_id: str, input_keys: Iterable[str]) -> None:
    """Seal every input key of the job. Best effort, after the state change committed: the sha256
    pinned at confirm-upload still keeps a photo written afterwards from being processed, and a
    canceled job's objects are deleted by the sweeper."""
    for key in input_keys:
        try:
            store.seal(key)
        except StorageUnavailable as e:
            log.warning("job %s: could not seal %s: %s", job_id, key, e)
