"""Standard Webhooks signatures (https://www.standardwebhooks.com): what is signed and how.

    signed content   = "{webhook-id}.{webhook-timestamp}.{body}"
    webhook-signature = "v1," + base64(HMAC-SHA256(key, signed content))

The secret is ``whsec_`` + base64 of the key bytes. ``verify`` is what a receiver runs (README has the
same steps for receivers in other languages): recompute, compare in constant time, refuse a
timestamp more than five minutes away from now (replays).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


class SignatureError(ValueError):
    """The signature does not match, or the message is too old or from the future."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as e:
        raise ValueError("a webhook secret is whsec_ followed by base64") from e


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, received: dict[str, str], body: bytes, *, now_s: float | None = None) -> None:
    """Raise ``SignatureError`` unless the headers (lower-case names) sign ``body`` with ``secret``."""
    msg_id = received.get("webhook-id", "")
    stamp = received.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        raise SignatureError("webhook-id and webhook-timestamp are required")
    now = time.time() if now_s is None else now_s
    if abs(now - int(stamp)) > TOLERANCE_S:
        raise SignatureError("the webhook timestamp is too far from now")
    expected = sign(secret, msg_id, int(stamp), body).encode()
    # The header may list several space-separated signatures (during a secret rotation).
    offered = received.get("webhook-signature", "").split()
    if not any(hmac.compare_digest(expected, sig.encode()) for sig in offered):
        raise SignatureError("no webhook signature matches")
