"""Immediate rollback triggers, measured inside each serving worker: error rate and p99 latency per side.

Why in the service and not in a flow: these are the triggers that must fire in seconds (the
seed's "error rate > 0.5%, p99 > 60 ms"), from the requests the worker itself answered.
Each side keeps a rolling window (the last `size` requests, none older than `horizon_s`);
the request path only appends a tuple under a lock. The watcher thread evaluates the
challenger's window a few times a second and, on a breach with at least `min_samples`
requests, rolls the rollout back once (other workers see that in rollout.json).
A 4xx is the caller's fault, not the model's, so only server-side failures count as errors.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowStats:
    samples: int
    error_rate: float
    p99_ms: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return {"samples": self.samples, "error_rate": self.error_rate, "p99_ms": self.p99_ms}


class SideWindow:
    """The last `size` (time, latency, error) samples of one side; cheap to append from any thread."""

    def __init__(self, size: int = 1000, horizon_s: float = 60.0) -> None:
        self.horizon_s = horizon_s
        self._samples: deque[tuple[float, float, bool]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, latency_ms: float, error: bool) -> None:
        with self._lock:
            self._samples.append((time.monotonic(), latency_ms, error))

    def stats(self) -> WindowStats:
        with self._lock:
            samples = list(self._samples)
        cutoff = time.monotonic() - self.horizon_s
        recent = [(lat, err) for t, lat, err in samples if t >= cutoff]
        if not recent:
            return WindowStats(0, 0.0, None)
        latencies = np.fromiter((lat for lat, _ in recent), dtype=np.float64, count=len(recent))
        errors = sum(1 for _, err in recent if err)
        return WindowStats(len(recent), errors / len(recent), float(np.percentile(latencies, 99)))


class ImmediateTriggers:
    """Per-side windows for one rollout; `breach()` names the first threshold the challenger broke."""

    def __init__(
        self,
        error_rate: float | None,
        p99_latency_ms: float | None,
        min_samples: int = 100,
        size: int = 1000,
        horizon_s: float = 60.0,
    ) -> None:
        self.error_rate = error_rate
        self.p99_latency_ms = p99_latency_ms
        self.min_samples = min_samples
        self.size, self.horizon_s = size, horizon_s
        self.rollout_id: str | None = None
        self.windows = {side: SideWindow(size, horizon_s) for side in ("champion", "challenger")}

    def reset(self, rollout_id: str | None) -> None:
        """A new rollout starts with empty windows: the last one's samples say nothing about it."""
        if rollout_id != self.rollout_id:
            self.rollout_id = rollout_id
            self.windows = {side: SideWindow(self.size, self.horizon_s) for side in ("champion", "challenger")}

    def record(self, side: str, latency_ms: float, error: bool) -> None:
        window = self.windows.get(side)
        if window is not None:
            window.add(latency_ms, error)

    def breach(self, side: str = "challenger") -> str | None:
        stats = self.windows[side].stats()
        if stats.samples < self.min_samples:
            return None
        if self.error_rate is not None and stats.error_rate > self.error_rate:
            return (
                f"{side} error rate {stats.error_rate:.2%} over the last {stats.samples} requests "
                f"> {self.error_rate:.2%} (rollback.immediate.error_rate)"
            )
        if self.p99_latency_ms is not None and stats.p99_ms is not None and stats.p99_ms > self.p99_latency_ms:
            return (
                f"{side} p99 latency {stats.p99_ms:.1f} ms over the last {stats.samples} requests "
                f"> {self.p99_latency_ms:g} ms (rollback.immediate.p99_latency_ms)"
            )
        return None

    def to_dict(self) -> dict[str, dict[str, float | int | None]]:
        return {side: window.stats().to_dict() for side, window in self.windows.items()}
