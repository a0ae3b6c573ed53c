"""Try the session and retry attacks of docs/reliability.md against a running stack (loopback only).

    python scripts/try_session_attacks.py --target http://127.0.0.1:8080

1. Sign-up farming: many ``POST /auth/anon`` with one ``device_hash``; counts the credits handed out.
2. Retried ``POST /jobs`` (a flaky network): the same ``Idempotency-Key`` sent one after another and
   all at once; counts the jobs created and the credits reserved.
3. A stolen refresh token: the owner refreshes, the copy is used afterwards; both chains must die.

Prints one JSON object with what happened; exits 1 if any attack got more than it should.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

JOB = {"preset": "interior", "item_count": 2}


def _data(response: httpx.Response) -> Any:
    return response.json()["data"]


def sign_up_farm(http: httpx.Client, signups: int) -> dict[str, Any]:
    device = f"farm-{uuid.uuid4()}"
    answers = [_data(http.post("/auth/anon", json={"device_hash": device})) for _ in range(signups)]
    return {
        "signups": signups,
        "accounts": len({a["user_id"] for a in answers}),
        "credits_handed_out": sum(a["credits"] for a in answers),
        "accounts_with_signup_credits": sum(1 for a in answers if a["signup_credits"]),
    }


def _user(http: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {_data(http.post('/auth/anon'))['token']}"}


def post_at_once(base_url: str, path: str, body: Any, headers: dict[str, str], copies: int) -> list[httpx.Response]:
    """``copies`` identical ``POST path`` (JSON ``body``) released together by a barrier, one connection
    each: a retry storm. Returns the answers that came back (each thread is waited for up to 60 s)."""
    barrier = threading.Barrier(copies)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            barrier.wait()
            answers.append(client.post(path, json=body, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def retried_create(base_url: str, http: httpx.Client, retries: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("sequential", "concurrent"):
        auth = _user(http)
        headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
        if mode == "sequential":
            answers = [http.post("/jobs", json=JOB, headers=headers) for _ in range(retries)]
        else:
            answers = post_at_once(base_url, "/jobs", JOB, headers, retries)
        me = _data(http.get("/me", headers=auth))
        jobs = _data(http.get("/jobs", headers=auth))["jobs"]
        out[mode] = {
            "requests": retries,
            "statuses": sorted({str(a.status_code) for a in answers}),
            "replayed": sum(1 for a in answers if a.headers.get("Idempotent-Replayed") == "true"),
            "jobs_created": len(jobs),
            "credits_reserved": me["credits_reserved"],
        }
    return out


def stolen_refresh_token(http: httpx.Client) -> dict[str, Any]:
    stolen = _data(http.post("/auth/anon"))["refresh_token"]
    owner = http.post("/auth/refresh", json={"refresh_token": stolen})
    thief = http.post("/auth/refresh", json={"refresh_token": stolen})
    owner_next = http.post("/auth/refresh", json={"refresh_token": _data(owner)["refresh_token"]})
    return {
        "owner_refresh": owner.status_code,
        "stolen_copy_used_after": thief.status_code,
        "owner_new_token_after_reuse": owner_next.status_code,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="http://127.0.0.1:8080")
    parser.add_argument("--signups", type=int, default=20)
    parser.add_argument("--retries", type=int, default=10)
    args = parser.parse_args(argv)
    if urlsplit(args.target).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--target must be a loopback address")
    if not (1 <= args.signups <= 200 and 2 <= args.retries <= 32):
        parser.error("--signups 1..200, --retries 2..32")
    with httpx.Client(base_url=args.target, timeout=30) as http:
        report = {
            "sign_up_farm": sign_up_farm(http, args.signups),
            "retried_post_jobs": retried_create(args.target, http, args.retries),
            "stolen_refresh_token": stolen_refresh_token(http),
        }
    print(json.dumps(report, indent=2))
    farm, retried, stolen = report["sign_up_farm"], report["retried_post_jobs"], report["stolen_refresh_token"]
    held = (
        farm["accounts_with_signup_credits"] <= 1
        and all(r["jobs_created"] == 1 and r["credits_reserved"] == JOB["item_count"] for r in retried.values())
        and (stolen["stolen_copy_used_after"], stolen["owner_new_token_after_reuse"]) == (401, 401)
    )
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
