"""Score records through the rollout: route each to a side, fall back to the champion, log, feed the triggers.

Why a challenger failure falls back to the champion instead of failing the request: the
champion is loaded and verified in the same worker, so the caller can always get its answer;
the failure still counts against the challenger (request log and immediate triggers), which is
what rolls a bad challenger back. A record the champion also refuses is the caller's fault and
gets the usual 4xx. Batches are split by side and merged back in order; should either part be
refused, the whole batch is re-checked by the champion so the 422 names the caller's indexes.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from prometheus_client import Counter, Histogram

from pipeline.rollout.simulate.faults import challenger_fault
from pipeline.serving.errors import RequestError
from pipeline.serving.records import entity_key
from pipeline.serving.request_log import Entry
from pipeline.serving.router import Routing
from pipeline.serving.scorer import Scorer
from pipeline.serving.shadow import ShadowJob
from pipeline.serving.state import ServingState

INLINE_RECORDS = 8
REQUEST_ID_MAX = 128

REQUESTS = Counter("keel_scored_records", "Records answered, by side and status", ["side", "status"])
LATENCY = Histogram(
    "keel_side_latency_seconds",
    "Scoring time per call, by side (shadow calls included for the challenger)",
    ["side"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)

# label children bound once: `.labels()` costs a dict lookup and a lock per call on the request path
_LATENCY = {side: LATENCY.labels(side) for side in ("champion", "challenger")}
_REQUESTS = {(side, st): REQUESTS.labels(side, st) for side in ("champion", "challenger") for st in ("ok", "error")}


class Unavailable(Exception):
    """No champion is loaded: a 503 with the reason."""


@dataclass
class Answer:
    results: list[dict[str, Any]]
    sides: list[str]
    shadow: ShadowJob | None


def request_id(header: str | None) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one (outcomes join the log on it)."""
    if header and len(header) <= REQUEST_ID_MAX and header.isascii() and header.isprintable():
        return header
    return secrets.token_hex(12)


async def run_scorer(state: ServingState, scorer: Scorer, records: Sequence[Any], explain: bool) -> list[dict]:
    """Small requests inline on the loop (the thread hop costs as much as the model), big ones on the pool."""
    if state.limiter is None or len(records) <= INLINE_RECORDS:
        return scorer.score(records, explain)
    return await anyio.to_thread.run_sync(scorer.score, records, explain, limiter=state.limiter)


async def score_routed(state: ServingState, records: Sequence[Any], explain: bool, rid: str) -> Answer:
    """Results in request order; RequestError for the caller's mistakes, Unavailable without a champion."""
    champion, routing = state.scorer, state.routing
    if champion is None:
        raise Unavailable(state.error or "not ready")
    if len(records) > champion.max_batch:
        raise RequestError([f"records: {len(records)} records exceed the batch cap of {champion.max_batch}"], 413)
    single = len(records) == 1
    rids = [rid] if single else [f"{rid}/{i}" for i in range(len(records))]
    keys = [entity_key(r, champion.id_field) if isinstance(r, dict) else None for r in records]
    groups = group_values(records, getattr(champion, "group_fields", ())) if routing is not None else None
    picks = [False] * len(records)
    if routing is not None and routing.traffic > 0:
        picks = [routing.side(k, r) == "challenger" for k, r in zip(keys, rids, strict=True)]
    results: list[dict[str, Any] | None] = [None] * len(records)
    sides = ["champion"] * len(records)
    chosen = [i for i, p in enumerate(picks) if p]
    rest = [i for i, p in enumerate(picks) if not p]
    if rest:
        await _champion_part(state, champion, routing, records, rest, explain, rids, keys, results, groups)
    if chosen and routing is not None:
        start = time.perf_counter()
        try:
            await challenger_fault()  # simulation only (KEEL_SIMULATION=1); a no-op otherwise
            answered = await run_scorer(state, routing.challenger, [records[i] for i in chosen], explain)
        except Exception as exc:  # RequestError too: the champion decides whether the caller was wrong
            failed_at = time.perf_counter()
            await _champion_part(state, champion, routing, records, chosen, explain, rids, keys, results, groups)
            # the champion took them, so the challenger failed on good input: that counts against it
            tag = routing.challenger.tag
            _observe(state, routing, "challenger", tag, chosen, rids, keys, start, exc, end=failed_at, groups=groups)
        else:
            tag = routing.challenger.tag
            _observe(state, routing, "challenger", tag, chosen, rids, keys, start, None, answered, groups=groups)
            for i, result in zip(chosen, answered, strict=True):
                results[i], sides[i] = result, "challenger"
    shadow = None
    if routing is not None and routing.shadow and state.shadow is not None:
        shadow = shadow_job(routing, records, rids, keys, groups)
    return Answer(results, sides, shadow)  # type: ignore[arg-type]  # every slot was filled above


def group_values(records: Sequence[Any], fields: Sequence[str]) -> list[str | None] | None:
    """Each record's fairness group values as the request log's JSON `groups` (None: no groups declared)."""
    if not fields:
        return None
    out: list[str | None] = []
    for record in records:
        if not isinstance(record, dict):
            out.append(None)  # the scorer refuses it (422) before anything is logged
            continue
        values = {f: record[f] for f in fields if record.get(f) is not None}  # checked by the scorer already
        out.append(json.dumps(values, sort_keys=True) if values else None)
    return out


def shadow_job(
    routing: Routing,
    records: Sequence[Any],
    rids: list[str],
    keys: list[str | None],
    groups: list[str | None] | None = None,
) -> ShadowJob | None:
    """Copies of the records whose entity falls in the stage's shadow share; None when none does."""
    if routing.shadow_share >= 1.0:
        return ShadowJob(routing, [dict(r) for r in records], rids, keys, groups)
    picked = [i for i in range(len(records)) if routing.shadowed(keys[i], rids[i])]
    if not picked:
        return None
    return ShadowJob(
        routing,
        [dict(records[i]) for i in picked],
        [rids[i] for i in picked],
        [keys[i] for i in picked],
        [groups[i] for i in picked] if groups is not None else None,
    )


async def _champion_part(
    state: ServingState,
    champion: Scorer,
    routing: Routing | None,
    records: Sequence[Any],
    indexes: list[int],
    explain: bool,
    rids: list[str],
    keys: list[str | None],
    results: list[dict[str, Any] | None],
    groups: list[str | None] | None = None,
) -> None:
    start = time.perf_counter()
    try:
        answered = await run_scorer(state, champion, [records[i] for i in indexes], explain)
    except RequestError:
        if len(indexes) < len(records):
            champion.score(records, explain)  # re-check the whole batch: problems name the caller's indexes
        raise
    except Exception as exc:
        _observe(state, routing, "champion", champion.tag, indexes, rids, keys, start, exc, groups=groups)
        raise
    _observe(state, routing, "champion", champion.tag, indexes, rids, keys, start, None, answered, groups=groups)
    for i, result in zip(indexes, answered, strict=True):
        results[i] = result


def _observe(
    state: ServingState,
    routing: Routing | None,
    side: str,
    tag: str,
    indexes: list[int],
    rids: list[str],
    keys: list[str | None],
    start: float,
    exc: BaseException | None,
    results: list[dict[str, Any]] | None = None,
    end: float | None = None,
    groups: list[str | None] | None = None,
) -> None:
    """One request-log row per record, one trigger sample and one latency sample per call."""
    ms = ((end or time.perf_counter()) - start) * 1e3
    failed = exc is not None
    _LATENCY[side].observe(ms / 1e3)
    _REQUESTS[side, "error" if failed else "ok"].inc(len(indexes))
    if state.triggers is not None and routing is not None and state.triggers.rollout_id == routing.rollout_id:
        state.triggers.record(side, ms, failed)
    if state.request_log is None:
        return
    stage = routing.stage if routing else None
    rollout_id = routing.rollout_id if routing else None
    error = f"{type(exc).__name__}: {exc}" if exc is not None else None
    for n, i in enumerate(indexes):
        probability = results[n]["probability"] if results is not None else None
        status = "error" if failed else "ok"
        group = groups[i] if groups is not None else None
        entry = Entry(rids[i], keys[i], tag, side, stage, rollout_id, ms, status, error, probability, groups=group)
        state.request_log.log(entry)


def report_shadow(state: ServingState, job: ShadowJob, results: list[dict] | None, ms: float, exc: Any) -> None:
    """The shadow thread's outcome: logged with shadow=true, counted against the challenger."""
    routing = job.routing
    _LATENCY["challenger"].observe(ms / 1e3)
    if state.triggers is not None and state.triggers.rollout_id == routing.rollout_id:
        state.triggers.record("challenger", ms, exc is not None)
    if state.request_log is None:
        return
    error = f"{type(exc).__name__}: {exc}" if exc is not None else None
    for n, (rid, key) in enumerate(zip(job.request_ids, job.entity_ids, strict=True)):
        result = results[n] if results is not None else {}
        state.request_log.log(
            Entry(
                rid,
                key,
                routing.challenger.tag,
                "challenger",
                routing.stage,
                routing.rollout_id,
                ms,
                "error" if exc is not None else "ok",
                error,
                result.get("probability"),
                shadow=True,
                items=result.get("items"),  # /recommend shadows: the challenger's list and level
                level=result.get("level"),
                groups=job.groups[n] if job.groups is not None else None,
            )
        )


def log_refusal(state: ServingState, rid: str, status: str, message: str) -> None:
    """A request that never reached a model (bad input, nothing loaded) is logged too: every request is."""
    if state.request_log is not None:
        routing = state.routing
        stage = routing.stage if routing else None
        rollout_id = routing.rollout_id if routing else None
        state.request_log.log(Entry(rid, None, None, "champion", stage, rollout_id, 0.0, status, message))
