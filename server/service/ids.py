"""Resource ids from requests: canonical UUID text, or a NOT_FOUND that reveals nothing."""

from __future__ import annotations

import uuid

from server.errors import NotFound


def canonical_id(value: str) -> str | None:
    """The canonical form of a UUID id, or None when ``value`` is not one."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def resource_id(value: str, what: str) -> str:
    """``value`` as a canonical id; anything else is reported as a missing ``what``."""
    parsed = canonical_id(value)
    if parsed is None:
        raise NotFound(f"{what} not found")
    return parsed
