"""Names of the call metadata the JobService reads or sends beyond ``authorization``, shared with
the REST shim that forwards them."""

from __future__ import annotations

IDEMPOTENCY_KEY = "idempotency-key"
"""Request metadata: the client's idempotency key (the shim forwards ``Idempotency-Key``)."""

REPLAYED = "idempotent-replayed"
"""Initial metadata of an answer replayed for an idempotency key (value ``true``)."""
