"""The HTTP server's own limits over real sockets (``gateway_rest.http_server``): request heads that
never complete (slow-loris), bodies that trickle, too many connections, and credentials checked from
the head alone. The served stack is the real one (gRPC JobService on SQLite, the local store), with
timeouts shortened so that each attack is seen to fail within seconds."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gateway_rest.http_server import HttpLimits
from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, err, live_rest, ok, sign_up
from tests.support.stack import jpeg_bytes

pytestmark = pytest.mark.integration

LIMITS = HttpLimits(header_timeout_s=1.0, body_timeout_s=1.5, body_min_rate_bytes_per_s=1024, max_connections=40)
# How long a closed connection may take to be seen closed, on a busy machine.
SLACK_S = 3.0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRest]:
    root: Path = tmp_path_factory.mktemp("http-limits")
    with live_rest(f"sqlite:///{root / 's3.db'}", root / "data", limits=LIMITS) as served:
        yield served


def _address(live: LiveRest) -> tuple[str, int]:
    parts = urlsplit(live.base_url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _connect(live: LiveRest) -> socket.socket:
    sock = socket.create_connection(_address(live), timeout=10)
    sock.settimeout(0.2)
    return sock


def _closed(sock: socket.socket) -> bool:
    """True once the server closed the connection (EOF or reset); reads what the server sent."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def _wait_closed(socks: list[socket.socket], within_s: float, trickle: bytes = b"") -> float:
    """Seconds until every socket is closed by the server; sends ``trickle`` on each every 0.2 s."""
    started = time.monotonic()
    open_ = list(socks)
    while open_ and time.monotonic() - started < within_s:
        for sock in list(open_):
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:
                    open_.remove(sock)
                    continue
            if _closed(sock):
                open_.remove(sock)
    assert not open_, f"{len(open_)} of {len(socks)} connections still open after {within_s} s"
    return time.monotonic() - started


def test_idle_and_trickling_request_heads_are_closed_at_the_header_timeout(live: LiveRest) -> None:
    idle = [_connect(live) for _ in range(15)]
    partial = [_connect(live) for _ in range(15)]
    for sock in partial:
        sock.sendall(b"GET /me HTTP/1.1\r\nHost: x\r\n")
    took = _wait_closed(idle + partial, LIMITS.header_timeout_s + SLACK_S, trickle=b"X")
    assert took >= LIMITS.header_timeout_s * 0.8  # closed by the deadline, not at once
    for sock in idle + partial:
        sock.close()
    # The server still answers everybody else.
    assert httpx.get(f"{live.base_url}/health", timeout=10).status_code == 200


def test_a_keep_alive_connection_trickling_its_next_head_is_closed(live: LiveRest) -> None:
    sock = _connect(live)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(10)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:100]
    sock.settimeout(0.2)
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    _wait_closed([sock], LIMITS.header_timeout_s + SLACK_S, trickle=b"X-Slow: 1\r\n")
    sock.close()


def test_a_complete_head_is_not_cut_by_the_header_timeout(live: LiveRest) -> None:
    """An event stream or a slow JobService answer is not a slow client: once the head is in, the
    head deadline no longer applies."""
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, _ = sign_up(http)
        for _ in range(3):
            ok(http.get("/me", headers=auth))
            time.sleep(LIMITS.header_timeout_s * 0.6)  # below uvicorn's keep-alive, over half the head timeout


def _upload_target(live: LiveRest) -> tuple[dict[str, str], dict[str, object]]:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, _ = sign_up(http)
        created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)
    return auth, created["upload_urls"][0]


def _leftovers(live: LiveRest) -> list[Path]:
    root = live.stack.settings.objects_dir
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith("~tmp")]


def test_a_trickling_upload_is_cut_off_and_leaves_no_temp_file(live: LiveRest) -> None:
    _, target = _upload_target(live)
    url = urlsplit(str(target["url"]))
    headers = dict(target["headers"])  # type: ignore[call-overload]
    photo = jpeg_bytes(seed=3)
    head = f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(photo)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock = _connect(live)
    sock.sendall(head.encode() + photo[:10])
    started = time.monotonic()
    sent = 10
    closed = False
    while time.monotonic() - started < LIMITS.body_timeout_s + SLACK_S + 2:
        try:
            sock.sendall(photo[sent : sent + 1])  # one byte every 0.2 s: far below the minimum rate
            sent += 1
        except OSError:
            closed = True
            break
        if _closed(sock):
            closed = True
            break
    took = time.monotonic() - started
    sock.close()
    assert closed, "the trickling upload was still open"
    assert took >= LIMITS.body_timeout_s * 0.8
    assert sent < len(photo)
    key = str(target["key"])
    deadline = time.monotonic() + 5
    while _leftovers(live) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(live) == []
    assert live.stack.store.head(key) is None


def test_a_fast_upload_far_over_the_grace_is_not_cut(live: LiveRest) -> None:
    """The body deadline grows with the bytes received: a client sending at several times the
    minimum rate finishes however long it takes."""
    _, target = _upload_target(live)
    photo = jpeg_bytes(width=256, height=192, seed=4)
    chunk = 2 * LIMITS.body_min_rate_bytes_per_s // 5  # 2x the minimum rate, in 0.2 s steps

    def slow_body() -> Iterator[bytes]:
        for i in range(0, len(photo), chunk):
            yield photo[i : i + chunk]
            time.sleep(0.2)

    assert len(photo) / (2 * LIMITS.body_min_rate_bytes_per_s) > LIMITS.body_timeout_s  # takes longer than the grace
    headers = {**dict(target["headers"]), "Content-Length": str(len(photo))}  # type: ignore[call-overload]
    r = httpx.put(str(target["url"]), content=slow_body(), headers=headers, timeout=60)
    assert ok(r)["size"] == len(photo)
    assert live.stack.store.get(str(target["key"])) == photo


def test_connections_past_the_cap_are_closed_at_once(live: LiveRest) -> None:
    held = [_connect(live) for _ in range(LIMITS.max_connections)]
    time.sleep(0.3)  # let the server accept them all
    extra = _connect(live)
    extra.settimeout(2)
    started = time.monotonic()
    assert _closed(extra)
    assert time.monotonic() - started < LIMITS.header_timeout_s  # closed by the cap, not by a timeout
    extra.close()
    for sock in held:
        sock.close()
    # Once they are gone, new clients are served again.
    deadline = time.monotonic() + 5
    while True:
        try:
            assert httpx.get(f"{live.base_url}/health", timeout=5).status_code == 200
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/jobs/{job_id}/callback", "X-Callback-Secret: wrong-wrong-wrong-wrong-wrong-wrong\r\n", 403),
        ("/rules", "Authorization: Bearer forged\r\n", 401),
    ],
)
def test_a_refused_request_is_answered_from_its_head(live: LiveRest, path: str, headers: str, status: int) -> None:
    """0.85 MB announced, not one byte of it sent: the answer comes anyway, and the connection closes."""
    size = 850_000
    head = f"POST {path.format(job_id='j1')} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {size}\r\n{headers}\r\n"
    sock = _connect(live)
    sock.settimeout(LIMITS.body_timeout_s)
    sock.sendall(head.encode())
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except TimeoutError:
        pytest.fail(f"no answer without the body: {answer[:200]!r}")
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == str(status).encode(), answer[:300]
    assert b"connection: close" in rest.lower()
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] in ("FORBIDDEN", "INVALID_TOKEN")
    sock.close()
    check_invariants(live.stack.db)


def test_an_oversize_declared_body_is_refused_from_its_head(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, _ = sign_up(http)
        r = http.post("/auth/anon", content=b"{" + b" " * 5000 + b"}")
        err(r, 413, "PAYLOAD_TOO_LARGE")
        assert r.headers["connection"] == "close"
        err(http.post("/rules", content=b"[" * 70_000, headers=auth), 413, "PAYLOAD_TOO_LARGE")
