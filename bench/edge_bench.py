"""What an unauthenticated sender of large bodies costs everybody else.

``python -m stack.serve`` as shipped (no pipeline workers, the in-process tiny model). Measured:

- the server's CPU time per refused callback (wrong ``X-Callback-Secret``) with a small body and with
  an 0.85 MB one: CPU time hardly moves when other processes compete for the cores;
- another user's ``GET /me`` latency (p50/p99, one client at a time) alone, then while four clients
  send 0.85 MB callbacks with a wrong secret in a loop.

Every loop is bounded in count and time; loopback only. ``python -m bench.edge_bench`` prints JSON.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api_bench import cpu_seconds
from bench.load import percentile
from scripts.demo.stack import EmbeddedStack, StackConfig

BIG_BODY_BYTES = 850_000
REFUSED = 200
ATTACKERS = 4
ATTACK_MAX_S = 30.0
GET_COUNT = 300
NO_JOB = "00000000-0000-0000-0000-000000000000"


def _callback_body(size: int) -> bytes:
    filler = "e" * max(0, size - 80)
    return json.dumps({"idempotency_key": "k", "idx": 0, "status": "failed", "error": filler}).encode()


def _refused_cpu_ms(base: str, pid: int, body: bytes, count: int) -> float:
    headers = {"X-Callback-Secret": "wrong-" + "w" * 40, "Content-Type": "application/json"}
    with httpx.Client(base_url=base, timeout=30) as http:
        before = cpu_seconds(pid)
        for _ in range(count):
            response = http.post(f"/jobs/{NO_JOB}/callback", content=body, headers=headers)
            assert response.status_code == 403, response.text
        return round((cpu_seconds(pid) - before) * 1000 / count, 3)


def _me_latency_ms(base: str, token: str, count: int) -> dict[str, float]:
    latencies: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(count):
            t0 = time.perf_counter()
            assert http.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            latencies.append(time.perf_counter() - t0)
    return {"p50_ms": round(percentile(latencies, 50) * 1000, 2), "p99_ms": round(percentile(latencies, 99) * 1000, 2)}


def _attack(base: str, stop: Any) -> None:
    """POST 0.85 MB callbacks with a wrong secret until ``stop`` is set or ATTACK_MAX_S pass."""
    body = _callback_body(BIG_BODY_BYTES)
    headers = {"X-Callback-Secret": "wrong-" + "w" * 40, "Content-Type": "application/json"}
    deadline = time.monotonic() + ATTACK_MAX_S
    with httpx.Client(base_url=base, timeout=30) as http:
        while not stop.is_set() and time.monotonic() < deadline:
            # The server may close the connection before the whole body is sent.
            with contextlib.suppress(httpx.HTTPError):
                http.post(f"/jobs/{NO_JOB}/callback", content=body, headers=headers)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        work = Path(tmp)
        config = StackConfig(
            data_dir=work / "data", log_path=work / "server.log", workers=0, env={"S3_INFERENCE": "onnx"}
        )
        with EmbeddedStack(config) as stack:
            stack.wait_healthy(300)
            assert stack.pid is not None
            base, pid = stack.base_url, stack.pid
            token = httpx.post(base + "/auth/anon", timeout=30).json()["data"]["token"]
            small_ms = _refused_cpu_ms(base, pid, _callback_body(200), REFUSED)
            big_ms = _refused_cpu_ms(base, pid, _callback_body(BIG_BODY_BYTES), REFUSED // 4)
            alone = _me_latency_ms(base, token, GET_COUNT)
            # The senders are processes of their own, so they do not compete with the measuring
            # client for this process's GIL.
            stop = multiprocessing.Event()
            attackers = [multiprocessing.Process(target=_attack, args=(base, stop)) for _ in range(ATTACKERS)]
            for process in attackers:
                process.start()
            time.sleep(1.0)
            under_attack = _me_latency_ms(base, token, GET_COUNT)
            stop.set()
            for process in attackers:
                process.join(timeout=ATTACK_MAX_S + 10)
    return {
        "refused_callback_cpu_ms": {"small": small_ms, "0.85MB": big_ms, "ratio": round(big_ms / small_ms, 1)},
        "get_me_alone": alone,
        f"get_me_with_{ATTACKERS}_big_refused_senders": under_attack,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
