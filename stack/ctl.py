"""``s3ctl`` (``python -m stack.ctl``): operator commands over the gRPC AdminService.

    s3ctl user USER_ID                      state and recent billing events
    s3ctl job JOB_ID                        any user's job: items, attempts, errors, leases
    s3ctl grant USER_ID AMOUNT --reason R   add credits
    s3ctl plan USER_ID free|pro             change plan
    s3ctl dead-letters                      items that failed after exhausting their attempts
    s3ctl requeue JOB_ID IDX                put a failed item back in the queue (re-reserves credits)
    s3ctl cancel JOB_ID                     cancel any job, refunding unfinished items
    s3ctl webhooks JOB_ID                   the job's webhook deliveries and every attempt

The server is ``--target`` (default ``S3_GRPC_TARGET``, else ``127.0.0.1:S3_GRPC_PORT``). The admin
token is ``S3_ADMIN_TOKEN``, else read from ``--token-file`` (default: the server's generated
``<S3_DATA_DIR>/secrets/admin_token``). Tables by default, ``--json`` for scripts. A failed call
prints its contract error code and message on stderr and exits 1; a usage or configuration error
exits 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from protos.s3.v1 import admin_pb2 as apb
from protos.s3.v1 import admin_pb2_grpc
from server.config import Settings
from server.settings_env import SettingsError

ERROR_CODE_METADATA_KEY = "s3-error-code"  # server.grpc_api.status; not imported to keep start-up light
DEFAULT_TIMEOUT_S = 15.0


class UsageError(Exception):
    """A configuration problem on the operator's side (no token, bad target)."""


# -- output -------------------------------------------------------------------------------------
def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Plain aligned columns, headers first."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pairs(values: Sequence[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in values)
    return "\n".join(f"{k.ljust(width)}  {'' if v is None else v}" for k, v in values)


def render_user(user: apb.AdminUser) -> str:
    s = user.state
    head = pairs(
        [
            ("user_id", s.user_id),
            ("plan", s.plan),
            ("auth", user.auth_provider),
            ("created_at", user.created_at),
            ("credits granted", user.credits_granted),
            ("credits available", s.credits),
            ("credits reserved", s.credits_reserved),
            ("credits spent", s.credits_spent),
            ("active jobs", f"{s.active_jobs} / {s.max_concurrency}"),
            ("rule slots", f"{s.rule_slots_used} / {s.rule_slots_max}"),
            ("max batch", s.max_batch),
        ]
    )
    events = table(
        [(e.id, e.created_at, e.type, e.amount, e.job_id or "-", e.ref) for e in user.recent_events],
        ("id", "at", "type", "amount", "job", "ref"),
    )
    return f"{head}\n\nrecent billing events (newest first)\n{events}"


def render_job(view: apb.AdminJob) -> str:
    j = view.job
    head = pairs(
        [
            ("job_id", j.job_id),
            ("user_id", view.user_id),
            ("status", j.status),
            ("preset", j.preset),
            ("items", f"{j.total_items} total, {j.done_items} done, {j.failed_items} failed"),
            ("credits", f"{j.credits_reserved} reserved, {j.credits_spent} spent ({j.cost_per_item} per item)"),
            ("package", f"{view.package_state} (attempts {view.package_attempts}) {view.package_lease_owner}".strip()),
            ("created_at", j.created_at),
            ("updated_at", j.updated_at),
            ("finished_at", view.finished_at or "-"),
            ("error", view.error or "-"),
        ]
    )
    queue = {q.idx: q for q in view.queue}
    rows = []
    for item in j.items:
        q = queue.get(item.idx)
        rows.append(
            (
                item.idx,
                item.status,
                f"{item.attempts}/{view.max_attempts}",
                q.stage if q else "",
                q.requeues if q else "",
                f"{q.lease_owner} until {q.lease_expires_at}" if q and q.lease_owner else "-",
                "yes" if q and q.dead_lettered else "",
                item.error or "",
            )
        )
    items = table(rows, ("idx", "status", "attempts", "stage", "requeues", "lease", "dead", "error"))
    return f"{head}\n\n{items}"


def render_dead_letters(page: apb.ListDeadLettersResponse) -> str:
    if not page.items:
        return "no dead-lettered items"
    rows = [
        (d.job_id, d.idx, d.user_id, d.attempts, d.job_status, "yes" if d.requeueable else "no", d.failed_at, d.error)
        for d in page.items
    ]
    out = table(rows, ("job", "idx", "user", "attempts", "job status", "requeueable", "failed at", "error"))
    if page.next_page_token:
        out += f"\n\nmore: --page-token {page.next_page_token}"
    return out


def render_webhooks(answer: apb.AdminWebhookDeliveries) -> str:
    if not answer.webhook_url:
        return f"job {answer.job_id} has no webhook"
    rows = [
        (
            d.seq,
            d.event,
            d.state,
            d.attempts,
            d.last_status or "-",
            d.delivered_at or d.next_attempt_at or "-",
            d.id,
            d.last_error or "",
        )
        for d in answer.deliveries
    ]
    out = f"webhook  {answer.webhook_url}\n\n"
    out += table(rows, ("seq", "event", "state", "attempts", "last", "delivered / next", "webhook-id", "error"))
    attempts = [
        (d.seq, n, a.at, a.status or "-", f"{a.ms} ms", a.error or "")
        for d in answer.deliveries
        for n, a in enumerate(d.log, start=1)
    ]
    if attempts:
        out += "\n\n" + table(attempts, ("seq", "attempt", "at", "status", "took", "error"))
    return out


def to_json(message: Message) -> str:
    doc: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(doc, indent=2, sort_keys=True)


# -- commands -----------------------------------------------------------------------------------
Call = Callable[[admin_pb2_grpc.AdminServiceStub, argparse.Namespace], tuple[Message, str]]


def _user(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    user = stub.GetUser(apb.GetUserRequest(user_id=a.user_id, events_limit=a.events), **a.call)
    return user, render_user(user)


def _job(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    job = stub.GetJob(apb.AdminJobRef(job_id=a.job_id), **a.call)
    return job, render_job(job)


def _grant(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    request = apb.GrantCreditsRequest(
        user_id=a.user_id, amount=a.amount, reason=a.reason, idempotency_key=a.idempotency_key or str(uuid.uuid4())
    )
    answer = stub.GrantCredits(request, **a.call)
    note = "already granted with this idempotency key: nothing changed" if answer.duplicate else f"granted {a.amount}"
    return answer, f"{note}\n\n{render_user(answer.user)}"


def _plan(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    user = stub.SetPlan(apb.SetPlanRequest(user_id=a.user_id, plan=a.plan, reason=a.reason), **a.call)
    return user, render_user(user)


def _dead_letters(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    request = apb.ListDeadLettersRequest(page_size=a.page_size, page_token=a.page_token, job_id=a.job)
    page = stub.ListDeadLetters(request, **a.call)
    return page, render_dead_letters(page)


def _requeue(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    job = stub.RequeueItem(apb.RequeueItemRequest(job_id=a.job_id, idx=a.idx, reason=a.reason), **a.call)
    return job, f"requeued item {a.idx}\n\n{render_job(job)}"


def _cancel(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    job = stub.CancelJob(apb.AdminCancelJobRequest(job_id=a.job_id, reason=a.reason), **a.call)
    return job, f"canceled\n\n{render_job(job)}"


def _webhooks(stub: admin_pb2_grpc.AdminServiceStub, a: argparse.Namespace) -> tuple[Message, str]:
    answer = stub.ListWebhookDeliveries(apb.AdminJobRef(job_id=a.job_id), **a.call)
    return answer, render_webhooks(answer)


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after the command's name. A command's own copy
    has no defaults, so it only overrides what was actually given after the name."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(None),
        help="host:port of the gRPC server (default S3_GRPC_TARGET or 127.0.0.1:S3_GRPC_PORT)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=default(None),
        help="admin token file (default <S3_DATA_DIR>/secrets/admin_token)",
    )
    parser.add_argument("--actor", default=default(None), help="your name in the audit log (default user@host)")
    parser.add_argument("--json", action="store_true", default=default(False), help="print the answer as JSON")
    parser.add_argument("--timeout", type=float, default=default(DEFAULT_TIMEOUT_S), help="seconds per call")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3ctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _global_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("user", parents=[common], help="a user's state and recent billing events")
    p.add_argument("user_id")
    p.add_argument("--events", type=int, default=20, help="how many billing events (at most 200)")
    p.set_defaults(run=_user)

    p = sub.add_parser("job", parents=[common], help="any user's job with items, attempts, errors and leases")
    p.add_argument("job_id")
    p.set_defaults(run=_job)

    p = sub.add_parser("grant", parents=[common], help="grant credits")
    p.add_argument("user_id")
    p.add_argument("amount", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--idempotency-key", help="repeat a grant safely: the same key grants once")
    p.set_defaults(run=_grant)

    p = sub.add_parser("plan", parents=[common], help="change a user's plan")
    p.add_argument("user_id")
    p.add_argument("plan", choices=("free", "pro"))
    p.add_argument("--reason", default="")
    p.set_defaults(run=_plan)

    p = sub.add_parser("dead-letters", parents=[common], help="items that failed after exhausting their attempts")
    p.add_argument("--job", default="", help="only this job's")
    p.add_argument("--page-size", type=int, default=0)
    p.add_argument("--page-token", default="")
    p.set_defaults(run=_dead_letters)

    p = sub.add_parser(
        "requeue", parents=[common], help="put a failed item of a queued or running job back in the queue"
    )
    p.add_argument("job_id")
    p.add_argument("idx", type=int)
    p.add_argument("--reason", default="")
    p.set_defaults(run=_requeue)

    p = sub.add_parser("cancel", parents=[common], help="cancel any non-terminal job (refunds unfinished items)")
    p.add_argument("job_id")
    p.add_argument("--reason", default="")
    p.set_defaults(run=_cancel)

    p = sub.add_parser("webhooks", parents=[common], help="a job's webhook deliveries with every attempt")
    p.add_argument("job_id")
    p.set_defaults(run=_webhooks)
    return parser


# -- plumbing -----------------------------------------------------------------------------------
def _default_actor() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "operator"
    return f"{name}@{socket.gethostname()}"[:64]


def resolve_token(settings: Settings, token_file: Path | None) -> str:
    if settings.auth.admin_token:
        return settings.auth.admin_token
    path = token_file or settings.data_dir / "secrets" / "admin_token"
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise UsageError(f"no admin token: S3_ADMIN_TOKEN is unset and {path} cannot be read ({e.strerror})") from e
    if not token:
        raise UsageError(f"no admin token: {path} is empty")
    return token


def rpc_failure(err: grpc.RpcError) -> str:
    """``CODE: message``, with the contract code when the server sent one, else the gRPC status."""
    contract = next((m.value for m in err.trailing_metadata() or () if m.key == ERROR_CODE_METADATA_KEY), None)
    code = contract.decode() if isinstance(contract, bytes) else contract
    return f"{code or err.code().name}: {err.details()}"


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    stdout, stderr = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        target = args.target or settings.grpc.target or f"127.0.0.1:{settings.grpc.port}"
        token = resolve_token(settings, args.token_file)
    except (SettingsError, UsageError) as e:
        print(f"s3ctl: {e}", file=stderr)
        return 2
    actor = args.actor or os.environ.get("S3_ADMIN_ACTOR") or _default_actor()
    args.call = {"metadata": (("x-admin-token", token), ("x-admin-actor", actor)), "timeout": args.timeout}
    run: Call = args.run
    with grpc.insecure_channel(target) as channel:
        try:
            message, text = run(admin_pb2_grpc.AdminServiceStub(channel), args)
        except grpc.RpcError as e:
            print(f"s3ctl: {rpc_failure(e)}", file=stderr)
            return 1
    print(to_json(message) if args.json else text, file=stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
