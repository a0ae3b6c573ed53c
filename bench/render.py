"""The generated sections of ``docs/benchmarks.md``, one function per part of ``bench/results.json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.report import table

MISSING = "_Not measured yet: run `make bench`._"


def _run_line(results: dict[str, Any], part: str) -> str:
    run = results.get("runs", {}).get(part)
    if not run:
        return ""
    m = run["machine_before"]
    load = ", ".join(str(x) for x in m["load_average"])
    return (
        f"_Measured {run['finished_at']} by `{run.get('command', results.get('command', 'make bench'))}` in {run['seconds']} s on "
        f"{m['cpus']} CPUs ({m['platform']}, Python {m['python']}); load average before: {load}, "
        f"after: {', '.join(str(x) for x in run['load_average_after'])}._"
    )


def api(results: dict[str, Any]) -> str:
    data = results.get("api")
    if not data:
        return MISSING
    rows = []
    for database, run in data.items():
        for endpoint, r in run["endpoints"].items():
            rows.append(
                [
                    database,
                    f"`{endpoint}`",
                    r["shim"]["server_cpu_ms"],
                    r["bare"]["server_cpu_ms"],
                    f"**{r['cpu_ratio']}**",
                    r["shim"]["rps"],
                    r["bare"]["rps"],
                    f"**{r['rps_ratio']}**",
                    r["shim"]["p99_ms"],
                    r["bare"]["p99_ms"],
                    f"**{r['p99_ratio']}**",
                    r["shim"]["requests"],
                ]
            )
    head = ["database", "endpoint", "shim server CPU ms/req", "bare server CPU ms/req", "CPU ratio"]
    head += ["shim req/s", "bare req/s", "req/s ratio", "shim p99 ms", "bare p99 ms", "p99 ratio", "requests"]
    concurrency = next(iter(data.values()))["concurrency"]
    return "\n\n".join(
        [
            f"{concurrency} requests in flight, one keep-alive pool, loopback.",
            table(head, rows),
            _run_line(results, "api"),
        ]
    )


def queue(results: dict[str, Any]) -> str:
    data = results.get("queue")
    if not data:
        return MISSING
    rows = []
    for database in ("sqlite", "postgresql"):
        run = data.get(database)
        if not run:
            continue
        for r in run["workers"]:
            rows.append(
                [database, r["workers"], r["items"], r["items_per_s"], r["direct_items_per_s"], f"**{r['x_direct']}**"]
            )
    intro = (
        f"{data['jobs']} albums of {data['items_per_job']} photos ({data['photo'][0]}x{data['photo'][1]} JPEG, "
        "interior preset, Wall recolor, Text protected, `listing` set of three renditions), all executed at once."
    )
    head = ["database", "worker processes", "items", "items/s", "direct calls items/s (reference)", "x direct"]
    return "\n\n".join([intro, table(head, rows), _run_line(results, "queue")])


def queue_noop(results: dict[str, Any]) -> str:
    data = results.get("queue_noop")
    if not data:
        return MISSING
    rows = [
        [
            r["workers"],
            r["items"],
            r["items_per_s"],
            r["pgqueuer_items_per_s"],
            f"**{r['x_pgqueuer']}**",
            f"**{r['statements_per_item']}**",
            r["round_trips_per_item"],
            r["transactions_per_item"],
        ]
        for r in data["workers"]
    ]
    intro = (
        f"PostgreSQL; {data['jobs']} albums of {data['items_per_job']} no-op items (one user each), claim batches "
        f"of {data['batch']}; pgqueuer with its default batch of 10 on the same server, same run."
    )
    head = [
        "worker processes",
        "items",
        "project queue items/s",
        "pgqueuer items/s (reference)",
        "x pgqueuer",
        "statements/item",
        "round trips/item",
        "transactions/item",
    ]
    return "\n\n".join([intro, table(head, rows), _run_line(results, "queue_noop")])


def growth(results: dict[str, Any]) -> str:
    data = results.get("growth")
    if not data:
        return MISSING
    rows = [
        [database, r["items"], r["seconds"], r["ms_per_item"], f"**{r['x_largest']}**"]
        for database in ("sqlite", "postgresql")
        for r in data.get(database, [])
    ]
    intro = (
        f"One album at a time, {data['workers']} worker processes, instant segmenter, the queue benchmark's "
        "photo and rule; the largest album is the reference."
    )
    head = ["database", "album items", "seconds (execute to set packaged)", "ms per item", "x the largest album's"]
    return "\n\n".join([intro, table(head, rows), _run_line(results, "growth")])


def applier_section(results: dict[str, Any]) -> str:
    data = results.get("applier")
    if not data:
        return MISSING
    from bench import applier_bench

    return "\n\n".join([applier_bench.markdown(data), _run_line(results, "applier")])


def triton(results: dict[str, Any]) -> str:
    data = results.get("triton")
    if not data:
        return MISSING
    from bench import triton_bench

    return "\n\n".join([triton_bench.markdown(data), _run_line(results, "triton")])


def sam3_full(results: dict[str, Any]) -> str:
    data = results.get("sam3_full")
    if not data:
        return MISSING
    from bench import sam3_full as full

    return "\n\n".join([full.markdown(data), _run_line(results, "sam3_full")])


def ratelimit(results: dict[str, Any]) -> str:
    data = results.get("ratelimit")
    if not data:
        return MISSING
    rows = []
    for endpoint, modes in data["endpoints"].items():
        for mode, r in modes.items():
            rows.append(
                [
                    f"`{endpoint}`",
                    mode,
                    r["server_cpu_ms"],
                    r["store_cpu_ms"],
                    r.get("limiter_cpu_ms", "-"),
                    r["rps_per_core"],
                    f"**{r['rps_per_core_ratio']}**" if "rps_per_core_ratio" in r else "1 (reference)",
                    r["rps"],
                    r["p99_ms"],
                    r["requests"],
                ]
            )
    head = ["endpoint", "limiter", "shim CPU ms/req", "Redis CPU ms/req", "limiter CPU ms/req"]
    head += ["req/s per core", "x without limiter", "req/s", "p99 ms", "requests"]
    intro = (
        f"{data['concurrency']} requests in flight, one keep-alive pool, loopback; the three servers run at once, "
        f"measured in {data['rounds']} interleaved rounds."
    )
    alone = data["limiter_alone_cpu_us"]
    alone_line = (
        "The limiter's own work for one request (verify the token, count it in its address and user buckets, "
        f"read both windows), alone in one process: **{alone['memory']} µs** of CPU with in-process counters, "
        f"**{alone['redis']} µs** with Redis (client side)."
    )
    return "\n\n".join([intro, table(head, rows), alone_line, _run_line(results, "ratelimit")])


def streams(results: dict[str, Any]) -> str:
    data = results.get("streams")
    if not data:
        return MISSING
    rows = []
    for database, run in data.items():
        for r in run["levels"]:
            per_stream = "" if r["kib_per_stream"] is None else r["kib_per_stream"]
            memory_mib = round(r["rss_kib"] / 1024, 1)
            ratio = f"**{r['p99_x_quiet']}**"
            rows.append([database, r["streams"], memory_mib, per_stream, r["p50_ms"], r["p99_ms"], ratio])
    head = ["database", "open streams", "server RSS MiB", "KiB per stream", "other user p50 ms", "other user p99 ms"]
    head += ["p99 vs 0 streams"]
    probes = next(iter(data.values()))["probes"]
    return "\n\n".join(
        [
            f"Another user's `GET /me`, {probes} requests one at a time from a client of its own.",
            table(head, rows),
            _run_line(results, "streams"),
        ]
    )


SECTIONS: dict[str, Callable[[dict[str, Any]], str]] = {
    "api": api,
    "queue": queue,
    "queue_noop": queue_noop,
    "growth": growth,
    "applier": applier_section,
    "triton": triton,
    "ratelimit": ratelimit,
    "streams": streams,
    "sam3_full": sam3_full,
}

TEMPLATE = """# Benchmarks

`make bench` runs every benchmark on this machine and writes `bench/results.json` and the tables
between the `bench:` markers below (text outside the markers is kept). Each figure stands next to a
reference measured in the same run, and the ratio is what carries across machines.

## REST shim -> gRPC -> database

`python -m stack.serve` as shipped (REST shim and JobService in one process, JSON logs at INFO, no
pipeline workers) against a bare Starlette app under the same uvicorn that answers with the very
bytes the shim answered. One client (`bench/load.py`: httpx, 16 requests in flight) drives both, one
endpoint after the other. Per endpoint: the server process's CPU time per request (user + system
time from `/proc` over the whole load, divided by the requests), requests/s and p99 latency.

The CPU ratio is the figure that carries: the work that the shim, the gRPC hop, the JobService and
the database driver add to each request. On a 2-core machine the Python client itself is the
bottleneck of the bare app, and client and servers share the cores with everything else running, so
the requests/s and p99 ratios stay near 1 and move from run to run. With PostgreSQL the database
server's own CPU (its own processes) is not in the figure.

<!-- bench:api -->
<!-- /bench:api -->

## Queue and orchestration

Worker processes (`server.work.worker.Worker` + `server.pipeline.Pipeline`, one per process, spawned) with
`bench/instant_segmenter.py`, a Segmenter that answers at once with one fixed instance, so that the time
is the pipeline's own: fetch, decode, apply the rule, render the set's templates, store, and package
each album's zip. The clock runs from the `execute` calls until every album is `done`. Reference,
measured right before each run on a fresh database: the same albums' pipeline calls made directly in
one process, timing only those calls (claims, leases, polling and settlement left out). `x direct`
below 1 with one worker is the cost of orchestration; above 1 with more workers is parallelism
(this machine has 2 cores, shared with the database server and the benchmark's own process).

<!-- bench:queue -->
<!-- /bench:queue -->

## The queue's own cost, side by side with pgqueuer

<!-- bench:queue_noop -->
<!-- /bench:queue_noop -->

## How cost grows with the album

<!-- bench:growth -->
<!-- /bench:growth -->

## Applier

See [applier.md](applier.md) for what each action does; `bench/applier_bench.py` measures it.

<!-- bench:applier -->
<!-- /bench:applier -->

## SAM3 serving (Triton)

See [sam3_serving.md](sam3_serving.md) for the serving design; `bench/triton_bench.py` measures it.

<!-- bench:triton -->
<!-- /bench:triton -->

## SAM3 at full size (`python -m bench.run --parts sam3_full`, after `make test-full`)

The seeded full-size random-weight SAM3 (840M parameters; speed, memory and size, not accuracy):
what `make test-full` measured on its run (export, the interior palette through the REST API), and
`bench/sam3_cost.py --full` on the same export: bytes per photo, Triton against PyTorch eager on the
same photo and model, the Triton tree's peak memory against eager's. Eager runs first and exits
before Triton starts.

<!-- bench:sam3_full -->
<!-- /bench:sam3_full -->

## Rate limiter

`bench/ratelimit_bench.py`: three `python -m stack.serve` at once, identical but for the rate
limiter (off, counters in process memory, counters in Redis), limits too high to refuse anything, the
same load loop on each in turn. Per request: the server's CPU time, Redis's, and from their sum
requests per second per core; `x without limiter` is that figure over the one without.

<!-- bench:ratelimit -->
<!-- /bench:ratelimit -->
## Open event streams

`bench/streams_bench.py`: `python -m stack.serve` as shipped (no pipeline workers, the tiny model
in-process) with `S3_MAX_STREAMS_PER_USER=1000`. One client holds 0, then 100, then 1,000
`GET /jobs/{id}/events` streams of one job open (each through the REST shim and a `WatchJob` call);
at each level, after 2 s, the server process's resident memory is read from `/proc`, and another
user's `GET /me` is timed from a client of its own, one request at a time. KiB per stream is the growth
over 0 streams divided by the streams. Before `grpc.aio` and the shared feeds, each stream held one of
the JobService's 32 threads and the 33rd request of anyone waited (the issue's report).
Command: `.venv/bin/python -m bench.run --parts streams`.

<!-- bench:streams -->
<!-- /bench:streams -->
"""
