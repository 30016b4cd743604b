"""Shadow scoring: the challenger scores a copy of each request on its own thread, after the response.

Why a bounded queue and one daemon thread rather than a task per request: the caller must not
feel the challenger at all (Seldon: responses "are only from the main model, not the shadow").
A task on the event loop would run the challenger's CPU work between other requests; a thread
per request would pile up behind a hanging challenger. Here a slow or stuck challenger only
fills the queue, and further copies are dropped and counted; an exception is caught, logged
as the challenger's error, and counted against it by the immediate triggers.
The thread waits LINGER_S after the first copy and scores everything queued in one call: a
single-record call is mostly fixed Python cost, run while holding the GIL the event loop needs
(bench/bench_rollout.py: one call per copy raised /score p99 1.7x at saturation). Shadow latency
is therefore the amortised time per record, not a per-request time. The thread is not niced: a
niced thread preempted while holding the GIL would stall the loop (priority inversion).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from pipeline.serving.router import Routing

log = logging.getLogger("keel.serving")

BATCH_RECORDS = 256  # at most this many queued records are scored in one challenger call
LINGER_S = 0.02  # how long the first copy waits for others before the call

SHADOW = Counter("keel_shadow_requests", "Shadow scores by the challenger, by outcome", ["outcome"])


@dataclass(frozen=True)
class ShadowJob:
    routing: Routing
    records: list[dict[str, Any]]
    request_ids: list[str]
    entity_ids: list[str | None]
    groups: list[str | None] | None = None  # /score: each record's fairness group values (request log JSON)


Report = Callable[[ShadowJob, list[dict[str, Any]] | None, float, BaseException | None], None]


class ShadowRunner:
    """Scores ShadowJobs with the job's challenger; `report(job, results, latency_ms, error)` gets every outcome."""

    def __init__(self, report: Report, maxsize: int = 256) -> None:
        self.report = report
        self.dropped = self.scored = self.failed = 0
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name="keel-shadow", daemon=True)
        self._thread.start()

    async def submit(self, job: ShadowJob) -> None:
        """Enqueue without waiting (async so Starlette runs it after the response, on the loop, no thread hop)."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            SHADOW.labels("dropped").inc()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            jobs = self._drain()
            if not jobs:
                return
            for group in _by_challenger(j for j in jobs if j is not None):
                self._score(group)
            if jobs[-1] is None:
                return

    def _drain(self) -> list[ShadowJob | None]:
        """One job (waiting for it), plus whatever else is queued: under load, copies are scored together."""
        jobs = [self._queue.get()]
        if jobs[0] is not None:
            time.sleep(LINGER_S)  # let copies gather: one call per tick instead of one per request
        size = len(jobs[0].records) if jobs[0] is not None else 0
        while jobs[-1] is not None and size < BATCH_RECORDS:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
            size += len(job.records) if job is not None else 0
        return jobs

    def _score(self, jobs: list[ShadowJob]) -> None:
        """One challenger call for the group; on failure each job alone, so errors land on the right rows."""
        records = [r for job in jobs for r in job.records]
        start = time.perf_counter()
        try:
            results = jobs[0].routing.challenger.score(records, explain=False)
        except Exception as exc:  # the challenger's failure is data for the triggers, not a crash
            if len(jobs) > 1:
                for job in jobs:
                    self._score([job])
                return
            self.failed += 1
            SHADOW.labels("failed").inc()
            self._report(jobs[0], None, (time.perf_counter() - start) * 1e3, exc)
            return
        per_record = (time.perf_counter() - start) * 1e3 / len(records)  # amortised over the group
        offset = 0
        for job in jobs:
            n = len(job.records)
            self.scored += 1
            SHADOW.labels("scored").inc()
            self._report(job, results[offset : offset + n], per_record * n, None)
            offset += n

    def _report(
        self, job: ShadowJob, results: list[dict[str, Any]] | None, ms: float, exc: BaseException | None
    ) -> None:
        try:
            self.report(job, results, ms, exc)
        except Exception:  # a logging failure must not kill the shadow thread
            log.exception("shadow report failed")


def _by_challenger(jobs: Iterable[ShadowJob]) -> list[list[ShadowJob]]:
    """Consecutive jobs for the same challenger (a rollout change mid-queue starts a new group)."""
    groups: list[list[ShadowJob]] = []
    for job in jobs:
        if groups and groups[-1][0].routing.challenger is job.routing.challenger:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups
