"""Standard Webhooks signatures: round trip, tampering, replay window, and the README's receiver
snippet agreeing with the service's signer."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from server.service import webhook_signature as ws

README = Path(__file__).resolve().parents[3] / "README.md"


def _readme_verify() -> Any:
    text = README.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify(secret" in b)
    scope: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), scope)
    return scope["verify"]


def test_a_signed_message_verifies_and_a_changed_one_does_not() -> None:
    secret = ws.new_secret()
    body = b'{"type":"job.done"}'
    now = int(time.time())
    headers = ws.headers(secret, "msg_1", now, body)
    assert headers["webhook-signature"].startswith("v1,")
    ws.verify(secret, headers, body)
    for changed_headers, changed_body in (
        ({**headers, "webhook-id": "msg_2"}, body),
        (headers, body + b" "),
        ({**headers, "webhook-timestamp": str(now + 1)}, body),
    ):
        with pytest.raises(ws.SignatureError):
            ws.verify(secret, changed_headers, changed_body)
    with pytest.raises(ws.SignatureError):
        ws.verify(ws.new_secret(), headers, body)
    with pytest.raises(ws.SignatureError, match="too far"):
        ws.verify(secret, headers, body, now_s=now + ws.TOLERANCE_S + 1)


def test_the_readme_snippet_accepts_our_signatures_and_refuses_forgeries() -> None:
    verify = _readme_verify()
    secret = ws.new_secret()
    body = b'{"type":"item.done"}'
    headers = ws.headers(secret, "msg_abc", int(time.time()), body)
    verify(secret, headers, body)
    with pytest.raises(ValueError):
        verify(secret, headers, b'{"type":"item.failed"}')
    with pytest.raises(ValueError):
        verify(secret, {**headers, "webhook-timestamp": str(int(time.time()) - 600)}, body)
