"""Load generator: N concurrent simulated users through the whole album flow of a running S3.

Each user signs up, reads its account and a preset, saves a rule, then runs ``--albums`` albums one
after another (the free plan allows one open job): create the job, PUT every photo to its presigned
URL, confirm, execute with the saved rule, poll the job until it ends, download the output set.

Reported: throughput (albums, photos and requests per second over the wall time), latency p50/p99
per endpoint (client side) and per album (create to terminal), and the end checks: every job ended,
every item is accounted for (done + failed = total), each user's credits equal what it was granted
minus what its jobs spent, no credit reserved; with ``--database-url`` also the ledger invariants
straight from the database (``tests.support.invariants.check_invariants``).

Bounded: at most 256 users, 10 photos per album, 20 albums per user, ``--timeout-s`` in all; loopback
targets only. Run against ``make serve`` (or any S3 on this host):

    python -m bench.loadgen --users 8 --photos 4 --target http://127.0.0.1:8080

Against ``make serve`` every user signs up from 127.0.0.1, so more than the sign-up limit per address
(``S3_RATE_LIMIT_SIGNUP_ADDRESS``, see the README) needs that setting raised there; a
refused sign-up shows as an error of ``POST /auth/anon`` in the report. Or let it start the stack
itself (with room for its users) as real processes on loopback (one Triton serving the tiny SAM3,
``python -m stack.serve``, and with ``--worker-processes K`` that many ``python -m stack.worker``
processes instead of in-process workers), on a throw-away PostgreSQL server or a SQLite file:

    python -m bench.loadgen --spawn postgres --worker-processes 3 --users 16 --photos 4
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

from bench.load import percentile
from bench.spawned_stack import spawned_stack

MAX_USERS = 256
MAX_PHOTOS = 10
MAX_ALBUMS = 20
TERMINAL = {"done", "failed", "canceled"}
RULE = {
    "name": "loadgen",
    "preset_id": "interior",
    "concepts": {"Wall": {"action": "recolor", "value": "white"}, "Floor": {"action": "adjust", "brightness": 0.1}},
    "protect": ["edges"],
}


class LoadError(RuntimeError):
    """The flow could not go on (an unexpected answer); the message names the step."""


def photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG (gradients, a flat block, sensor noise), seeded."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], axis=-1)
    base[height // 3 : 2 * height // 3, width // 4 : width // 2] = rng.integers(0, 255, 3)
    pixels = np.clip(base + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@dataclass
class Recorder:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)

    async def call(
        self, endpoint: str, send: Callable[[], Awaitable[httpx.Response]], expect: int = 200
    ) -> httpx.Response:
        started = time.perf_counter()
        response = await send()
        self.latencies[endpoint].append(time.perf_counter() - started)
        if response.status_code != expect:
            message = f"{endpoint}: HTTP {response.status_code} {response.text[:300]}"
            self.unexpected.append(message)
            raise LoadError(message)
        return response


@dataclass
class UserOutcome:
    user_id: str
    granted: int
    jobs: list[dict[str, Any]] = field(default_factory=list)
    album_seconds: list[float] = field(default_factory=list)
    me: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _data(response: httpx.Response) -> Any:
    return response.json()["data"]


def _put(http: httpx.AsyncClient, target: dict[str, Any], data: bytes) -> Callable[[], Awaitable[httpx.Response]]:
    def send() -> Awaitable[httpx.Response]:
        return http.request(target["method"], target["url"], content=data, headers=target["headers"])

    return send


async def _album(
    http: httpx.AsyncClient, rec: Recorder, auth: dict[str, str], photos: list[bytes], rule_id: str, poll_s: float
) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    body = {"preset": "interior", "item_count": len(photos)}
    created = _data(await rec.call("POST /jobs", lambda: http.post("/jobs", json=body, headers=auth), 201))
    job_id = created["job_id"]
    for target, data in zip(created["upload_urls"], photos, strict=True):
        await rec.call("PUT upload URL", _put(http, target, data))
    await rec.call("POST /jobs/{id}/confirm-upload", lambda: http.post(f"/jobs/{job_id}/confirm-upload", headers=auth))
    run = {"rule_id": rule_id}
    await rec.call("POST /jobs/{id}/execute", lambda: http.post(f"/jobs/{job_id}/execute", json=run, headers=auth))
    while True:
        job = _data(await rec.call("GET /jobs/{id}", lambda: http.get(f"/jobs/{job_id}", headers=auth)))
        if job["status"] in TERMINAL:
            break
        await asyncio.sleep(poll_s)
    elapsed = time.perf_counter() - started
    if job["set_url"]:
        await rec.call("GET set URL", lambda: http.get(job["set_url"]))
    return job, elapsed


async def _user(
    http: httpx.AsyncClient, rec: Recorder, n: int, albums: int, photos: list[bytes], poll_s: float
) -> UserOutcome:
    anon = _data(await rec.call("POST /auth/anon", lambda: http.post("/auth/anon"), 201))
    outcome = UserOutcome(user_id=anon["user_id"], granted=anon["credits"])
    auth = {"Authorization": f"Bearer {anon['token']}"}
    try:
        await rec.call("GET /me", lambda: http.get("/me", headers=auth))
        await rec.call("GET /presets/{id}", lambda: http.get("/presets/interior", headers=auth))
        rule = _data(await rec.call("POST /rules", lambda: http.post("/rules", json=RULE, headers=auth), 201))
        for _ in range(albums):
            job, seconds = await _album(http, rec, auth, photos, rule["rule_id"], poll_s)
            outcome.jobs.append(job)
            outcome.album_seconds.append(seconds)
        outcome.me = _data(await rec.call("GET /me", lambda: http.get("/me", headers=auth)))
    except (LoadError, httpx.HTTPError) as e:
        outcome.error = f"user {n}: {e}"
    return outcome


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def _checks(outcomes: list[UserOutcome], albums: int, photos: int) -> dict[str, Any]:
    jobs = [j for o in outcomes for j in o.jobs]
    return {
        "users_finished": sum(1 for o in outcomes if o.error is None),
        "jobs_expected": len(outcomes) * albums,
        "jobs_ended": sum(1 for j in jobs if j["status"] in TERMINAL),
        "items_expected": len(outcomes) * albums * photos,
        "items_accounted": sum(j["done_items"] + j["failed_items"] for j in jobs),
        "items_done": sum(j["done_items"] for j in jobs),
        "items_failed": sum(j["failed_items"] for j in jobs),
        "jobs_by_status": {s: sum(1 for j in jobs if j["status"] == s) for s in sorted({j["status"] for j in jobs})},
        # What each user sees must equal what its jobs say it spent: no drift, nothing still reserved.
        "credit_drift_users": sum(
            1
            for o in outcomes
            if o.me
            and (
                o.me["credits"] != o.granted - sum(j["credits_spent"] for j in o.jobs)
                or o.me["credits_reserved"] != 0
                or o.me["credits_spent"] != sum(j["done_items"] * j["cost_per_item"] for j in o.jobs)
            )
        ),
    }


def passed(report: dict[str, Any]) -> bool:
    c = report["checks"]
    return bool(
        c["users_finished"] == report["users"]
        and c["jobs_ended"] == c["jobs_expected"]
        and c["items_accounted"] == c["items_expected"]
        and c["credit_drift_users"] == 0
        and not report["errors"]
        and c.get("database_invariants", "ok") == "ok"
    )


async def run_load(
    target: str,
    *,
    users: int,
    photos: int,
    albums: int = 1,
    size: tuple[int, int] = (640, 480),
    poll_s: float = 0.25,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Run the simulated users against ``target`` and return the report (see the module doc)."""
    _check_bounds(target, users, photos, albums)
    album = [photo(size[0], size[1], seed=i) for i in range(photos)]
    rec = Recorder()
    limits = httpx.Limits(max_connections=users * 2, max_keepalive_connections=users * 2)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=target, timeout=120, limits=limits) as http:
        tasks = [asyncio.create_task(_user(http, rec, n, albums, album, poll_s)) for n in range(users)]
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*tasks), timeout_s)
        except TimeoutError:
            raise LoadError(f"the run did not finish within {timeout_s}s") from None
    wall = time.perf_counter() - started
    requests = sum(len(v) for v in rec.latencies.values())
    done_photos = sum(j["done_items"] for o in outcomes for j in o.jobs)
    return {
        "target": target,
        "users": users,
        "photos_per_album": photos,
        "albums_per_user": albums,
        "photo_size": f"{size[0]}x{size[1]}",
        "wall_s": round(wall, 2),
        "albums_per_s": round(sum(len(o.jobs) for o in outcomes) / wall, 3),
        "photos_done_per_s": round(done_photos / wall, 3),
        "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "album_latency": _ms([s for o in outcomes for s in o.album_seconds]),
        "endpoints": {name: _ms(values) for name, values in sorted(rec.latencies.items())},
        "errors": [o.error for o in outcomes if o.error] + rec.unexpected[:20],
        "checks": _checks(outcomes, albums, photos),
    }


def check_loopback(target: str) -> None:
    """ValueError unless ``target`` is on this host: the load tools never send traffic elsewhere."""
    host = urlsplit(target).hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(f"--target must be a loopback address, got {host!r}")


def _check_bounds(target: str, users: int, photos: int, albums: int) -> None:
    check_loopback(target)
    for name, value, top in (
        ("users", users, MAX_USERS),
        ("photos", photos, MAX_PHOTOS),
        ("albums", albums, MAX_ALBUMS),
    ):
        if not 1 <= value <= top:
            raise ValueError(f"--{name} must be within 1..{top}, got {value}")


def check_database(url: str) -> str:
    """``ok`` when the ledger invariants hold in the database at ``url``, else the failure."""
    from server.db.engine import Database
    from tests.support.invariants import check_invariants

    db = Database.from_url(url)
    try:
        check_invariants(db)
    except AssertionError as e:
        return f"violated: {e}"
    finally:
        db.dispose()
    return "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--target", default="http://127.0.0.1:8080", help="base URL of the REST API (loopback)")
    parser.add_argument("--spawn", choices=["sqlite", "postgres"], help="start the stack here instead of --target")
    parser.add_argument("--worker-processes", type=int, default=0, help="with --spawn: separate worker processes")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--photos", type=int, default=4, help="photos per album (free plan: at most 10)")
    parser.add_argument("--albums", type=int, default=1, help="albums per user, one after another")
    parser.add_argument("--size", default="640x480", help="photo size WxH")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--database-url", help="also check the ledger invariants in this database at the end")
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    if not 0 <= args.worker_processes <= 8:
        print("loadgen: --worker-processes must be within 0..8", file=sys.stderr)
        return 2

    def load(target: str) -> dict[str, Any]:
        return asyncio.run(
            run_load(
                target,
                users=args.users,
                photos=args.photos,
                albums=args.albums,
                size=(int(width), int(height)),
                timeout_s=args.timeout_s,
            )
        )

    try:
        if args.spawn:
            with (
                tempfile.TemporaryDirectory(prefix="s3-loadgen-") as work,
                spawned_stack(args.spawn, args.worker_processes, Path(work), max_users=MAX_USERS) as (target, db),
            ):
                report = load(target)
                report["checks"]["database_invariants"] = check_database(db)
            report["stack"] = f"{args.spawn}, " + (
                f"{args.worker_processes} worker processes" if args.worker_processes else "1 in-process worker"
            )
        else:
            report = load(args.target)
            if args.database_url:
                report["checks"]["database_invariants"] = check_database(args.database_url)
    except (ValueError, LoadError) as e:
        print(f"loadgen: {e}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if passed(report) else 1


if __name__ == "__main__":
    raise SystemExit(main())
