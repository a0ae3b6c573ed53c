"""A webhook receiver on a loopback port, in a thread: records every request, answers 500 to the
first ``fail_first`` attempts of each message, can hold requests open, and acknowledges each
``webhook-id`` as a careful receiver does (once; a repeat is recorded as a duplicate)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Received] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempts(self, msg_id: str) -> list[int]:
        with self.lock:
            return [r.status for r in self.requests if r.headers.get("webhook-id") == msg_id]


@contextmanager
def webhook_receiver(*, fail_first: int = 0, hold: bool = False) -> Iterator[Receiver]:
    receiver = Receiver(fail_first=fail_first)
    if not hold:
        receiver.release.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            msg_id = headers.get("webhook-id", "")
            with receiver.lock:
                receiver.in_flight += 1
            try:
                receiver.release.wait(60)
                with receiver.lock:
                    seen = sum(1 for r in receiver.requests if r.headers.get("webhook-id") == msg_id)
                    status = 500 if seen < receiver.fail_first else 200
                    receiver.requests.append(Received(headers, body, status))
                    if status == 200:
                        (receiver.duplicates if msg_id in receiver.acknowledged else receiver.acknowledged).append(
                            msg_id
                        )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
            finally:
                with receiver.lock:
                    receiver.in_flight -= 1

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
