"""Prometheus metrics of the JobService process.

Nothing here is global: ``ServiceMetrics.create`` makes a fresh ``CollectorRegistry`` with its
collectors, the composition root (``stack.runtime``) calls it once and hands the parts to the
code that records them, so two servers (or two tests) in one process never share counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from server.db.engine import Database
from server.metrics.inference import InferenceMetrics
from server.metrics.rpc import RpcMetrics
from server.metrics.state import StateCollector


@dataclass(frozen=True)
class ServiceMetrics:
    registry: CollectorRegistry
    rpc: RpcMetrics
    inference: InferenceMetrics

    @classmethod
    def create(cls, db: Database, *, exports_state: Callable[[], bool] = lambda: True) -> ServiceMetrics:
        """``exports_state`` says, at each scrape, whether this process exports the database gauges."""
        registry = CollectorRegistry(auto_describe=True)
        registry.register(StateCollector(db, exports=exports_state))
        return cls(registry, RpcMetrics(registry), InferenceMetrics(registry))


__all__ = ["InferenceMetrics", "RpcMetrics", "ServiceMetrics", "StateCollector"]
