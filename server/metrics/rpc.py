"""gRPC request counts and latencies, per method and outcome (recorded by the server interceptor)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Admin and job RPCs answer in milliseconds; WatchJob streams last as long as the job.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "s3_grpc_requests",
            "gRPC calls handled, by full method name and outcome (OK or the contract error code).",
            ("method", "code"),
            registry=registry,
        )
        self.latency = Histogram(
            "s3_grpc_request_duration_seconds",
            "Time from a call's arrival to its answer (to the end of the stream for streams).",
            ("method", "code"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method, code).observe(seconds)
