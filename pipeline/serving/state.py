"""ServingState: what one worker serves right now, swapped field by field by the watcher.

Every field a request reads is replaced by one assignment of an object that was built and
verified completely beforehand (a Scorer, a Routing), so a request that read it once finishes
on a consistent view even if the watcher swaps it mid-request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import anyio

from pipeline.serving.cache import CacheHealth, ScoreCache
from pipeline.serving.request_log import RequestLog
from pipeline.serving.router import Routing
from pipeline.serving.scorer import Scorer
from pipeline.serving.shadow import ShadowRunner
from pipeline.serving.triggers import ImmediateTriggers


@dataclass
class ServingState:
    """What the routes read; filled in by whoever loaded the bundle (the BentoML service or the bench)."""

    scorer: Scorer | None = None  # the champion (an OnlineRecommender when task is recommendation)
    task: str = "binary_classification"  # the served spec's task: /score or /recommend answers
    cache: ScoreCache | None = None  # batch scores, read in the champion's namespace only (ADR 0018)
    cache_health: CacheHealth = field(default_factory=CacheHealth)
    error: str | None = "not loaded yet"  # why nothing is served (None once a scorer is live)
    reload_error: str | None = None  # why the latest champion change was not taken (the old one still serves)
    loaded_at: float | None = None
    threads: int = field(default_factory=lambda: int(os.environ.get("KEEL_SCORE_THREADS", os.cpu_count() or 1)))
    limiter: anyio.CapacityLimiter | None = None
    standby: Scorer | None = None  # the previous champion, loaded and verified, for an instant rollback
    routing: Routing | None = None  # the live rollout's challenger and share; None: the champion answers all
    rollout: dict[str, Any] | None = None  # the rollout record as last read, for /status
    rollout_error: str | None = None  # why the rollout record is not being followed (champion only then)
    request_log: RequestLog | None = None
    triggers: ImmediateTriggers | None = None
    shadow: ShadowRunner | None = None
    triggered: str | None = None  # the last immediate rollback this worker performed, and why
    admin_token: str | None = None  # KEEL_ADMIN_TOKEN: a caller presenting it sees paths on /status (admin.py)
    paths: dict[str, str] = field(default_factory=dict)  # spec, store, request_log, score_cache: redacted for others

    def __post_init__(self) -> None:
        if self.threads > 0 and self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.threads)
