"""The REST API as the app calls it: envelope in, data out, the error envelope kept when a call fails."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

JsonObject = dict[str, Any]


class ApiError(RuntimeError):
    """A call that did not succeed; ``envelope`` is the server's answer as received."""

    def __init__(self, step: str, status: int, envelope: object) -> None:
        self.step = step
        self.status = status
        self.envelope = envelope
        super().__init__(f"{step}: HTTP {status}: {json.dumps(envelope)[:2000]}")


def _decode(step: str, response: httpx.Response) -> JsonObject:
    try:
        body = response.json()
    except ValueError:
        raise ApiError(step, response.status_code, response.text[:2000]) from None
    if not isinstance(body, dict) or not body.get("success"):
        raise ApiError(step, response.status_code, body)
    data = body.get("data")
    return data if isinstance(data, dict) else {}


class Api:
    """One signed-in user of the REST API."""

    def __init__(self, base_url: str, *, timeout_s: float = 60.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)
        self._headers: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def sign_in(self) -> JsonObject:
        """``POST /auth/anon``: a new anonymous user; later calls carry its token."""
        user = self.call("sign in", "POST", "/auth/anon")
        self._headers = {"Authorization": f"Bearer {user['token']}"}
        return user

    def call(self, step: str, method: str, path: str, body: Mapping[str, Any] | None = None) -> JsonObject:
        response = self._http.request(method, path, json=body, headers=self._headers)
        return _decode(step, response)

    def upload(self, step: str, target: Mapping[str, Any], data: bytes) -> None:
        """A presigned upload: the method, URL and headers the server gave, nothing else."""
        response = self._http.request(
            str(target["method"]), str(target["url"]), content=data, headers=dict(target.get("headers") or {})
        )
        if response.status_code >= 300:
            try:
                envelope: object = response.json()
            except ValueError:
                envelope = response.text[:2000]
            raise ApiError(step, response.status_code, envelope)

    def download(self, step: str, url: str) -> bytes:
        response = self._http.get(url)
        if response.status_code != 200:
            raise ApiError(step, response.status_code, response.text[:2000])
        return response.content

    def job_events(self, job_id: str, *, read_timeout_s: float = 60.0) -> Iterator[tuple[str, JsonObject]]:
        """``GET /jobs/{id}/events`` (SSE): ``(event, data)`` until the server ends the stream."""
        timeout = httpx.Timeout(10.0, read=read_timeout_s)
        with self._http.stream("GET", f"/jobs/{job_id}/events", headers=self._headers, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                _decode("watch job", response)
                raise ApiError("watch job", response.status_code, response.text[:2000])
            event, data = "message", ""
            for line in response.iter_lines():
                if line.startswith(":"):
                    continue  # keep-alive comment
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and data:
                    yield event, json.loads(data)
                    event, data = "message", ""
