"""Rate attacks against a running S3 on this host, bounded in requests and time: what one client
gets by flooding sign-up, one user's token, or made-up ``X-Forwarded-For`` addresses.

    python -m bench.flood --target http://127.0.0.1:8080 --requests 400

Each attack sends ``--requests`` requests, 16 in flight, and reports the answers by status and code,
the requests per second, and for sign-up how many accounts (and free credits) it obtained. Loopback
targets only; at most 5,000 requests and ``--timeout-s`` per attack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import httpx

from bench.loadgen import check_loopback

MAX_REQUESTS = 5000
CONCURRENCY = 16


async def _attack(
    http: httpx.AsyncClient, method: str, path: str, count: int, timeout_s: float, headers_of: Any
) -> dict[str, Any]:
    answers: Counter[str] = Counter()
    credits = 0
    retry_after: set[str] = set()
    sent = 0
    started = time.perf_counter()
    deadline = started + timeout_s

    async def one() -> None:
        nonlocal sent, credits
        while sent < count and time.perf_counter() < deadline:
            n = sent
            sent += 1
            response = await http.request(method, path, headers=headers_of(n))
            body = response.json()
            code = body["error"]["code"] if body.get("error") else "ok"
            answers[f"{response.status_code} {code}"] += 1
            if response.status_code == 201 and path == "/auth/anon":
                credits += int(body["data"]["credits"])
            if response.status_code == 429:
                retry_after.add(response.headers.get("retry-after", "missing"))

    await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {
        "requests": sum(answers.values()),
        "seconds": round(seconds, 2),
        "requests_per_s": round(sum(answers.values()) / seconds, 1),
        "answers": dict(sorted(answers.items())),
        "retry_after_values": sorted(retry_after, key=lambda v: (len(v), v))[:5],
    }
    if path == "/auth/anon":
        report["accounts_created"] = answers.get("201 ok", 0)
        report["credits_obtained"] = credits
    return report


async def run(target: str, count: int, timeout_s: float) -> dict[str, Any]:
    check_loopback(target)
    if not 1 <= count <= MAX_REQUESTS:
        raise ValueError(f"--requests must be within 1..{MAX_REQUESTS}, got {count}")
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=target, limits=limits, timeout=30.0) as http:
        # The account the one-user flood uses, made before sign-up is flooded.
        created = await http.post("/auth/anon")
        created.raise_for_status()
        auth = {"Authorization": f"Bearer {created.json()['data']['token']}"}
        signup = await _attack(http, "POST", "/auth/anon", count, timeout_s, lambda n: {})
        spoofed = await _attack(
            http, "POST", "/auth/anon", count, timeout_s, lambda n: {"X-Forwarded-For": f"198.18.{n // 250}.{n % 250}"}
        )
        user = await _attack(http, "GET", "/me", count, timeout_s, lambda n: auth)
    return {"signup_flood": signup, "signup_flood_with_made_up_x_forwarded_for": spoofed, "one_user_flood": user}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--target", default="http://127.0.0.1:8080", help="base URL of the REST API (loopback)")
    parser.add_argument("--requests", type=int, default=400, help="requests per attack")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="time limit per attack")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(run(args.target, args.requests, args.timeout_s))
    except ValueError as e:
        print(f"flood: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
