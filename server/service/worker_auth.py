"""The credential of workers behind the WorkerService (``S3_WORKER_TOKEN``).

A worker holding it may claim any work and sign URLs to any claimed job's objects, so it is a
credential of its own, never the callback secret, compared in constant time. Without a configured
token the WorkerService refuses every call.
"""

from __future__ import annotations

import hmac

from server.errors import Forbidden


class WorkerAuth:
    def __init__(self, token: str | None) -> None:
        self._token = token

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def authenticate(self, presented: str | None) -> None:
        """:class:`Forbidden` unless ``presented`` is the worker token."""
        if self._token is None:
            raise Forbidden("the worker API is off on this replica (S3_WORKER_TOKEN is unset)")
        if not presented or not hmac.compare_digest(presented.encode(), self._token.encode()):
            raise Forbidden("the worker token is missing or wrong")
