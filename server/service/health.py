"""Readiness of the service's dependencies (database, storage, inference) for /health."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

log = logging.getLogger(__name__)

Probe = Callable[[], str]
"""Returns a short detail when healthy; raises when not."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    components: tuple[ComponentStatus, ...]
    model: str
    model_meaningful: bool


class Health:
    def __init__(
        self,
        probes: Sequence[tuple[str, Probe]],
        *,
        model: str = "none",
        model_meaningful: bool = False,
        timeout_s: float = 3.0,
    ) -> None:
        self._probes = list(probes)
        self._model = model
        self._meaningful = model_meaningful
        self._timeout_s = timeout_s
        # Probes run in parallel, each bounded, so one hung dependency cannot hang /health.
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._probes)), thread_name_prefix="health")

    @property
    def model(self) -> tuple[str, bool]:
        """The segmentation model's name and whether its masks mean anything (real weights)."""
        return self._model, self._meaningful

    def report(self) -> HealthReport:
        futures = [(name, self._pool.submit(probe)) for name, probe in self._probes]
        components = []
        for name, future in futures:
            try:
                components.append(ComponentStatus(name, True, future.result(timeout=self._timeout_s)))
            except FutureTimeout:
                components.append(ComponentStatus(name, False, f"no answer within {self._timeout_s:g}s"))
            except Exception as e:  # any failure of a dependency is a "not ready", reported, not raised
                log.warning("health probe %s failed: %s", name, e)
                components.append(ComponentStatus(name, False, str(e) or type(e).__name__))
        return HealthReport(
            ok=all(c.ok for c in components),
            components=tuple(components),
            model=self._model,
            model_meaningful=self._meaningful,
        )
