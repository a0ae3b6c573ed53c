"""``make bench`` (``python -m bench.run``): every benchmark, each figure next to its reference from
the same run, into ``bench/results.json`` and the generated sections of ``docs/benchmarks.md``.

Parts (``--parts`` runs a subset; the other parts' previous results are kept):

- ``api``: REST shim -> gRPC -> database vs a bare Starlette endpoint (:mod:`bench.api_bench`), on
  SQLite and on PostgreSQL.
- ``queue``: album items per second with the instant segmenter and 1, 2, 4 worker processes, on SQLite
  and on PostgreSQL, vs the same pipeline work called directly (:mod:`bench.queue_bench`).
- ``queue_noop``: no-op items per second with 1, 2, 4 worker processes through the project's queue
  and through pgqueuer on the same PostgreSQL, and the queue's SQL statements per item
  (:mod:`bench.queue_noop`; pgqueuer runs from ``.venv-bench``, created on first use).
- ``growth``: albums of 1, 10 and 100 items, time per item.
- ``applier``: :mod:`bench.applier_bench` (ms per megapixel per action vs one memory pass).
- ``triton``: :mod:`bench.triton_bench` (perf_analyzer, Triton vs in-process, bytes and memory per photo vs PyTorch eager).
- ``ratelimit``: the REST shim without rate limits, with in-process counters and with counters in
  Redis, side by side (:mod:`bench.ratelimit_bench`).
- ``streams``: memory per open job-event stream and another user's p99 at 0 / 100 / 1,000 open
  streams (:mod:`bench.streams_bench`), on SQLite and on PostgreSQL.

Run only when named (``--parts sam3_full``), after ``make test-full``:

- ``sam3_full``: the full-size tier's export and serving figures and one photo's cost at full size
  (:mod:`bench.sam3_full`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import api_bench, queue_bench, streams_bench
from bench.render import SECTIONS, TEMPLATE
from bench.report import refresh

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results.json"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
PARTS = ("api", "queue", "queue_noop", "growth", "applier", "triton", "ratelimit", "streams")
"""What ``make bench`` runs."""
OPT_IN_PARTS = ("sam3_full",)
"""Parts that need more than the checkout (the full-size export): run when named."""
WORKERS = (1, 2, 4)
QUEUE_JOBS, QUEUE_ITEMS = 4, 12
NOOP_JOBS, NOOP_ITEMS, NOOP_BATCH = 20, 100, 16
GROWTH_SIZES = (1, 10, 100)
GROWTH_WORKERS = 2


@contextlib.contextmanager
def postgres() -> Iterator[Any]:
    from tests.servers.postgres import run_postgres  # the test fixture's server: real PostgreSQL, thrown away

    with run_postgres() as server:
        yield server


def _api(pg: Any) -> dict[str, Any]:
    out = {"sqlite": api_bench.run(None, label="sqlite")}
    with pg.fresh_database("bench_api") as url:
        out["postgresql"] = api_bench.run(url, label="postgresql")
    return out


def _queue(pg: Any) -> dict[str, Any]:
    """Per database and worker count, the direct reference right before the run it is compared with,
    so that both see the same machine load."""
    out: dict[str, Any] = {"jobs": QUEUE_JOBS, "items_per_job": QUEUE_ITEMS, "photo": list(queue_bench.PHOTO_SIZE)}
    for label in ("sqlite", "postgresql"):
        rows = []
        for workers in WORKERS:
            with contextlib.ExitStack() as stack:
                url = None if label == "sqlite" else stack.enter_context(pg.fresh_database(f"bench_d{workers}"))
                direct = queue_bench.direct_rate(url, QUEUE_JOBS, QUEUE_ITEMS)
            with contextlib.ExitStack() as stack:
                url = None if label == "sqlite" else stack.enter_context(pg.fresh_database(f"bench_q{workers}"))
                row = queue_bench.scaling(url, workers, QUEUE_JOBS, QUEUE_ITEMS)
            row["direct_items_per_s"] = round(direct, 2)
            row["x_direct"] = round(row["items_per_s"] / direct, 2)
            rows.append(row)
        out[label] = {"workers": rows}
    return out


def _queue_noop(pg: Any) -> dict[str, Any]:
    """Per worker count, pgqueuer and the project's queue one right after the other, each on a
    fresh database of the same server."""
    from bench import queue_noop

    items = NOOP_JOBS * NOOP_ITEMS
    rows = []
    for workers in WORKERS:
        with pg.fresh_database(f"bench_pgq{workers}") as url:
            reference = queue_noop.pgqueuer(url, workers, items)
        with pg.fresh_database(f"bench_noop{workers}") as url:
            row = queue_noop.ours(url, workers, NOOP_JOBS, NOOP_ITEMS, NOOP_BATCH)
        row["pgqueuer_items_per_s"] = reference["items_per_s"]
        row["x_pgqueuer"] = round(row["items_per_s"] / reference["items_per_s"], 3)
        rows.append(row)
    return {"jobs": NOOP_JOBS, "items_per_job": NOOP_ITEMS, "batch": NOOP_BATCH, "workers": rows}


def _growth(pg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": GROWTH_WORKERS, "sqlite": queue_bench.growth(None, GROWTH_WORKERS, GROWTH_SIZES)}
    with pg.fresh_database("bench_growth") as url:
        out["postgresql"] = queue_bench.growth(url, GROWTH_WORKERS, GROWTH_SIZES)
    return out


def _applier(pg: Any) -> dict[str, Any]:
    from bench import applier_bench

    return applier_bench.run()


def _triton(pg: Any) -> dict[str, Any]:
    from bench import triton_bench

    return triton_bench.run()


def _sam3_full(pg: Any) -> dict[str, Any]:
    from bench import sam3_full

    return sam3_full.run()


def _ratelimit(pg: Any) -> dict[str, Any]:
    from bench import ratelimit_bench

    return ratelimit_bench.run()


def _streams(pg: Any) -> dict[str, Any]:
    out = {"sqlite": streams_bench.run(None)}
    with pg.fresh_database("bench_streams") as url:
        out["postgresql"] = streams_bench.run(url)
    return out


RUNNERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "api": _api,
    "queue": _queue,
    "queue_noop": _queue_noop,
    "growth": _growth,
    "applier": _applier,
    "triton": _triton,
    "ratelimit": _ratelimit,
    "streams": _streams,
    "sam3_full": _sam3_full,
}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS + OPT_IN_PARTS)}"
    )
    parser.add_argument("--render", action="store_true", help="only refresh docs/benchmarks.md from results.json")
    args = parser.parse_args(argv)
    if args.render:
        results_only: dict[str, Any] = json.loads(RESULTS.read_text())
        refresh(DOC, {name: render(results_only) for name, render in SECTIONS.items()}, TEMPLATE)
        print(f"wrote {DOC.relative_to(REPO_ROOT)} from {RESULTS.relative_to(REPO_ROOT)}")
        return 0
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS) - set(OPT_IN_PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")

    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["command"] = "make bench" if set(parts) == set(PARTS) else f"python -m bench.run --parts {','.join(parts)}"
    results.setdefault("runs", {})
    failed = []
    needs_pg = {"api", "queue", "queue_noop", "growth", "streams"} & set(parts)
    with postgres() if needs_pg else contextlib.nullcontext() as pg:
        for part in parts:
            print(f"== {part}", flush=True)
            started = time.monotonic()
            before = machine()
            try:
                results[part] = RUNNERS[part](pg)
            except Exception:
                traceback.print_exc()
                failed.append(part)
                continue
            results["runs"][part] = {
                "command": results["command"],
                "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "seconds": round(time.monotonic() - started, 1),
                "machine_before": before,
                "load_average_after": machine()["load_average"],
            }
            # Written after every part: a later failure keeps what was measured.
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(f"   {part}: {results['runs'][part]['seconds']} s", flush=True)
    refresh(DOC, {name: render(results) for name, render in SECTIONS.items()}, TEMPLATE)
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)} and {DOC.relative_to(REPO_ROOT)}")
    if failed:
        print(f"FAILED parts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
