"""One user's recommendation, online: retrieval -> features -> ranking -> re-ranking, each stage timed.

Built from a loaded bundle, it reuses the offline objects (Retrieval,
RankingFeatureBuilder, RankingStage, rerank) rather than re-implementing them, so for the same
user it returns the same final list as `system.Recommender` (tests/unit/test_recsys_online.py
compares them). What it adds is the request discipline of `spec.serving`:

* Stage budgets. Retrieval sources and the ranker run on a small thread pool and are waited
  for at most their stage budget (FAISS, scipy and LightGBM release the GIL); a source still
  running is left out, a ranker still running is abandoned. The Redis feature lookup carries
  its budget as the socket timeout.
* The fallback chain. A stage that raises or runs past its budget hands over to a level:
  features -> STALE_FEATURES (the bundle's embedded values), ranking -> SIMPLE_RANKING
  (retrieval order), retrieval -> POPULARITY (popularity minus seen). A level missing from the
  declared chain is replaced by the next declared one after it; the answer names its level.
* Re-ranking is optional work: skipped once the request has used reranker.latency_budget_share
  of serving.sla_ms (the response says so).
* Cold start: unknown users and users with fewer than cold_start.min_interactions known
  positives get the cold-start policy (popularity, or popularity within a declared attribute).
* The hot path uses arrays, not frames: candidates as `Candidates`, the merge as `merge_one`,
  and a LightGBM ranker's input as `RankerMatrix` (online_features.py), which the first request
  checks bit for bit against the offline frame path (`_same_as_frame`); on any difference, and
  for any other ranker, the frame path answers.

Fault injection for tests (documented in docs/adr/0012-recommend-serving.md): `faults` maps a
stage (`retrieval.two_tower`, `retrieval.cooccurrence`, `retrieval.popularity`, `features`,
`ranking`, `rerank`) to `raise` or `sleep:<ms>`; the service reads it from KEEL_TEST_FAULTS.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.recsys import attributes as item_attributes
from pipeline.recsys import system
from pipeline.recsys.bundle import RecsysBundle
from pipeline.recsys.cold_start import ColdStart, _minus_seen
from pipeline.recsys.fallback import NoFallbackLeft, degrade
from pipeline.recsys.online_candidates import (
    Candidates,
    _padded,
    _runner,
    cooccurrence_list,
    merge_one,
    one_omp_thread,
)
from pipeline.recsys.online_features import RankerMatrix, RedisFeatures, matrix_matches_frame, online_names
from pipeline.recsys.rerank import LatencyBudget, rerank
from pipeline.recsys.source_state import restore_sources
from pipeline.spec.schema import ServingSpec

log = logging.getLogger("keel.serving")

POOL = cf.ThreadPoolExecutor(max_workers=16, thread_name_prefix="keel-stage")


RankerInput = np.ndarray | pd.DataFrame  # the LightGBM matrix (RankerMatrix) or the feature frame


@dataclass
class Recommendation:
    """The answer to one request, before the HTTP layer adds routing fields."""

    user_id: str
    items: list[dict[str, Any]]
    level: str
    cold_start: bool
    bundle: str
    timings_ms: dict[str, float]
    rerank: dict[str, Any]
    retrieval_failed: dict[str, str] = field(default_factory=dict)
    features: str | None = None  # redis | embedded | None (no ranker features needed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": self.items,
            "level": self.level,
            "cold_start": self.cold_start,
            "bundle": self.bundle,
            "timings_ms": self.timings_ms,
            "rerank": self.rerank,
            "retrieval": {"failed": self.retrieval_failed},
            "features": self.features,
        }


class OnlineRecommender:
    """Answers one user at a time from one bundle; safe to share between threads (no mutable state per call)."""

    threshold = None  # /status prints a scorer's threshold; a recommender has none
    id_field = None
    max_batch = 1

    def __init__(
        self,
        tag: str,
        bundle: RecsysBundle,
        serving: ServingSpec,
        redis: RedisFeatures | None = None,
        faults: Mapping[str, tuple[str, float]] | None = None,
    ) -> None:
        state = bundle.serving
        if state is None:
            raise ValueError(f"bundle {tag} has no serving/ state: retrain it with this version of keel run")
        self.tag = tag
        self.serving = serving
        self.redis = redis
        self.faults = dict(faults or {})
        info = state.info
        user_ids = bundle.users.iloc[:, 0].to_numpy()
        self.item_ids = np.array([str(i) for i in bundle.items.iloc[:, 0].to_numpy()], dtype=object)
        self.user_ids = np.array([str(u) for u in user_ids], dtype=object)
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        model = bundle.model
        vectors, known = model.user_embeddings(user_ids) if model is not None else (None, None)
        cooc, popularity = state.sources()
        self.retrieval = system.Retrieval(
            index=bundle.index,
            user_vectors=vectors,
            user_known=known,
            item_vectors=model.item_embeddings() if model is not None else None,
            cooccurrence=cooc,
            popularity=popularity,
            k=int(info["retrieval_k"]),
            weights=tuple(info["weights"]),
        )
        declared_sources = info.get("declared_sources")
        if declared_sources:  # retrieval.sources: the batch lists' merge, the fitted sources from the bundle
            self.retrieval.names = tuple(d["name"] for d in declared_sources)
            self.retrieval.per_source_features = True
            self.retrieval.extra = restore_sources(declared_sources, state.source_arrays, state.history)
        self.seen = state.seen
        self.builder = state.builder()
        features = list(bundle.info.get("ranker_features") or [])
        self.ranking = system.RankingStage(bundle.ranker, features, dict(bundle.info.get("ranker") or {}))
        self.attribute, self.exposure = state.attribute()
        self.reranker = info.get("reranker")
        self.online_user, self.online_item = online_names(self.builder)
        declared = item_attributes.from_json(info["attributes"])
        self.cold_start = ColdStart.build(serving.cold_start, state.popularity, state.items, state.users, declared)
        self._popular = self.cold_start.popular  # ties: lower index
        self.levels = list(serving.fallback)
        self._matrix = self._matrix_path(bundle.ranker)
        self._matrix_ok: bool | None = None  # None: not compared with the frame path yet (see _ranker_input)

    # ------------------------------------------------------------------ the request

    def recommend(self, user_id: Any, k: int, context: Mapping[str, Any] | None = None) -> Recommendation:
        start = time.perf_counter()
        uid = str(user_id)
        u = self.user_index.get(uid)
        known = 0 if u is None else int(self.seen.indptr[u + 1] - self.seen.indptr[u])
        if u is None or known < self.serving.cold_start.min_interactions:
            return self._cold(uid, u, k, context or {}, start)
        timings: dict[str, float] = {}
        try:
            return self._warm(uid, u, k, start, timings)
        except NoFallbackLeft:
            raise
        except Exception:  # a fault outside the guarded stages: the last declared level still answers
            log.exception("recommend failed for a warm user; answering with a fallback level")
            return self._popularity_answer(uid, u, k, self._degrade("FULL", "retrieval"), start, timings, {})

    def _warm(self, uid: str, u: int, k: int, start: float, timings: dict[str, float]) -> Recommendation:
        users = np.array([u], dtype=np.int64)
        t = time.perf_counter()
        lists, failed = self._retrieve(users)
        timings["retrieval"] = _ms(t)
        names = self.retrieval.names
        if len(failed) == len(names):
            level = self._degrade("FULL", "retrieval")
            return self._popularity_answer(uid, u, k, level, start, timings, failed)
        items, sources = merge_one([lists[s][0] for s in names], self.retrieval.k, self.retrieval.weights)
        if not len(items):
            level = self._degrade("FULL", "retrieval")
            return self._popularity_answer(uid, u, k, level, start, timings, failed)
        declared = lists if self.retrieval.per_source_features else None
        rows = Candidates.merged(self.retrieval, u, items, sources, declared)
        level, features_from, scores = "FULL", None, None
        if self.ranking.ranker is not None:
            t = time.perf_counter()
            x, features_from, level = self._features(uid, rows, level)
            timings["features"] = _ms(t)
            t = time.perf_counter()
            if x is not None:
                scores, level = self._rank(x, level)
            timings["ranking"] = _ms(t)
        ranked = scores is not None
        if scores is None:  # no ranker in the bundle (FULL) or the ranking fell back (SIMPLE_RANKING)
            scores = -np.arange(len(rows.items), dtype=np.float64)  # merged order
        t = time.perf_counter()
        picked, report = self._rerank(rows.items, scores, k, start)
        timings["rerank"] = _ms(t)
        shown = scores if ranked else rows.retrieval_score  # the ranker's, else the two-tower cosine
        out = [
            {
                "item_id": self.item_ids[rows.items[p]],
                "score": float(shown[p]),
                "source": names[rows.sources[p]],
            }
            for p in picked
        ]
        timings["total"] = _ms(start)
        return Recommendation(uid, out, level, False, self.tag, _rounded(timings), report, failed, features_from)

    def score(self, records: list[dict[str, Any]], explain: bool = False) -> list[dict[str, Any]]:
        """The shadow runner's interface (pipeline/serving/shadow.py): one answer per /recommend body."""
        out = []
        for record in records:
            rec = self.recommend(record["user_id"], int(record.get("k", 10)), record.get("context"))
            out.append({"probability": None, "items": [i["item_id"] for i in rec.items], "level": rec.level})
        return out

    # ------------------------------------------------------------------ stages

    def _retrieve(self, users: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Every source at once; whatever has not answered within the retrieval budget is left out."""
        r = self.retrieval
        builtin: dict[str, Callable[[], np.ndarray]] = {
            "two_tower": lambda: (one_omp_thread(), r._ann(users, self.seen))[1],
            "cooccurrence": lambda: _padded(self._cooccurrence(int(users[0]), r.k), r.k),
            "popularity": lambda: _padded(_minus_seen(int(users[0]), r.k, self._popular, self.seen), r.k),
        }
        runners = {name: _runner(r, name, users, self.seen, builtin) for name in r.names}
        futures = {POOL.submit(self._guarded, f"retrieval.{name}", run): name for name, run in runners.items()}
        done, pending = cf.wait(futures, timeout=self.serving.stage_budget_ms.retrieval / 1000.0)
        lists: dict[str, np.ndarray] = {}
        failed: dict[str, str] = {}
        for future in pending:
            future.cancel()
            failed[futures[future]] = "timeout"
        for future in done:
            name = futures[future]
            try:
                lists[name] = future.result()
            except Exception as exc:  # one source down must not take retrieval down
                failed[name] = f"{type(exc).__name__}: {exc}"
        empty = np.full((1, r.k), -1, dtype=np.int64)
        return {name: lists.get(name, empty) for name in r.names}, failed

    def _features(self, uid: str, rows: Candidates, level: str) -> tuple[RankerInput | None, str | None, str]:
        """The ranker's input: embedded features, with the online counters from Redis when configured."""
        try:
            self._fault("features")
            x = self._ranker_input(rows)
        except Exception as exc:  # without features there is nothing to rank with
            log.warning("features failed (%s): retrieval order", exc)
            return None, None, self._degrade(self._degrade(level, "features"), "ranking")
        if self.redis is None:
            return x, "embedded", level
        wanted = [n for n in (*self.online_user, *self.online_item) if n in self.ranking.features]
        if not wanted:
            return x, "embedded", level
        t = time.perf_counter()
        try:
            user, items = self.redis.fetch(uid, list(self.item_ids[rows.items]))
            if _ms(t) > self.serving.stage_budget_ms.features:
                raise TimeoutError(f"redis lookup took {_ms(t):.1f} ms")
        except Exception as exc:  # down, slow, unpublished: the bundle's values are the stale fallback
            log.warning("online features unavailable (%s): embedded values", type(exc).__name__)
            return x, "embedded", self._degrade(level, "features")
        for name in wanted:
            if isinstance(x, np.ndarray):
                j = self._matrix.column[name]  # type: ignore[union-attr]
                if name in user:
                    x[:, j] = user[name]
                elif name in items:
                    x[:, j] = np.where(np.isnan(items[name]), x[:, j], items[name])
            elif name in user:
                x[name] = user[name]
            elif name in items:
                fresh = items[name]
                x[name] = np.where(np.isnan(fresh), x[name].to_numpy(dtype=np.float64), fresh)
        return x, "redis", level

    def _matrix_path(self, ranker: Any) -> RankerMatrix | None:
        """The pandas-free input builder for a LightGBM ranker; None (the frame path) for anything else."""
        if getattr(ranker, "booster", None) is None or self.retrieval.per_source_features:
            return None  # declared sources' score and rank columns come from the frame path only
        try:
            return RankerMatrix(self.builder, ranker, self.retrieval.names)
        except Exception as exc:  # a feature it cannot build: the frame path still can
            log.warning("%s: no matrix path for the ranker (%s); using the frame path", self.tag, exc)
            return None

    def _ranker_input(self, rows: Candidates) -> RankerInput:
        """The matrix (verified once against the frame path, which answers if they differ) or the frame."""
        if self._matrix is None or self._matrix_ok is False:
            return system.ranker_frame(self.builder, rows.frame(self.retrieval), self.ranking.features)
        x = self._matrix.build(rows.user, rows.items, rows.retrieval_score, rows.sources)
        if self._matrix_ok is None:
            frame = system.ranker_frame(self.builder, rows.frame(self.retrieval), self.ranking.features)
            self._matrix_ok = self._same_as_frame(x, frame)
            if not self._matrix_ok:
                log.warning("%s: the ranker's matrix path differs from the frame path; not used", self.tag)
                return frame
        return x

    def _same_as_frame(self, x: np.ndarray, frame: pd.DataFrame) -> bool:
        return matrix_matches_frame(x, frame, self.ranking.ranker)

    def _rank(self, x: RankerInput, level: str) -> tuple[np.ndarray | None, str]:
        ranker = self.ranking.ranker
        assert ranker is not None
        future = POOL.submit(self._guarded, "ranking", lambda: self._score(x))
        try:
            return future.result(timeout=self.serving.stage_budget_ms.ranking / 1000.0), level
        except Exception as exc:  # raised or timed out: retrieval order answers
            future.cancel()
            log.warning("ranking failed (%s): retrieval order", type(exc).__name__)
            return None, self._degrade(level, "ranking")

    def _score(self, x: RankerInput) -> np.ndarray:
        """The ranker's scores: LightGBM straight from the matrix (one thread: concurrency comes from requests),
        any other ranker (or a matrix path that failed its check) from the frame."""
        ranker = self.ranking.ranker
        assert ranker is not None
        if isinstance(x, np.ndarray):
            return np.asarray(ranker.booster.predict(x, num_threads=1), dtype=np.float64)  # type: ignore[attr-defined]
        return ranker.score(x)

    def _cooccurrence(self, u: int, k: int) -> np.ndarray:
        return cooccurrence_list(self.retrieval.cooccurrence, self.seen, u, k)

    def _rerank(self, items: np.ndarray, scores: np.ndarray, k: int, start: float) -> tuple[np.ndarray, dict[str, Any]]:
        order = np.argsort(-scores, kind="stable")[:k]
        if self.reranker is None or self.attribute is None:
            return order, {"ran": False, "skipped_reason": "no re-ranker in the spec"}
        budget = LatencyBudget(self.serving.sla_ms, self.reranker["latency_budget_share"], start=start)
        try:
            self._fault("rerank")
            result = rerank(
                np.arange(len(items)),
                scores,
                self.attribute[items],
                k,
                self.reranker["diversity_weight"],
                self.reranker["min_exposure_share"],
                exposure_counts=self.exposure,
                deadline=budget,
            )
        except Exception as exc:  # optional work: the ranked list answers
            return order, {"ran": False, "skipped_reason": f"error: {type(exc).__name__}"}
        report = result.report
        return result.positions, {"ran": report.ran, "skipped_reason": report.skipped}

    # ------------------------------------------------------------------ fallbacks and cold start

    def _degrade(self, level: str, stage: str) -> str:
        return degrade(self.levels, level, stage)

    def _popularity_answer(
        self, uid: str, u: int, k: int, level: str, start: float, timings: dict[str, float], failed: dict[str, str]
    ) -> Recommendation:
        t = time.perf_counter()
        chosen = _minus_seen(u, k, self._popular, self.seen)
        items = self._listed(chosen, "popularity")
        timings["rerank"] = _ms(t)
        timings["total"] = _ms(start)
        report = {"ran": False, "skipped_reason": f"fallback level {level}"}
        return Recommendation(uid, items, level, False, self.tag, _rounded(timings), report, failed)

    def _cold(self, uid: str, u: int | None, k: int, context: Mapping[str, Any], start: float) -> Recommendation:
        chosen, source = self.cold_start.choose(u, k, self.seen, context)  # the batch lists' policy too
        items = self._listed(chosen, source)
        timings = {"retrieval": 0.0, "features": 0.0, "ranking": 0.0, "rerank": 0.0, "total": _ms(start)}
        report = {"ran": False, "skipped_reason": "cold start"}
        return Recommendation(uid, items, "FULL", True, self.tag, _rounded(timings), report)

    def _listed(self, chosen: np.ndarray, source: str) -> list[dict[str, Any]]:
        counts = self.retrieval.popularity.item_counts
        return [{"item_id": self.item_ids[i], "score": float(counts[i]), "source": source} for i in chosen]

    # ------------------------------------------------------------------ faults

    def _guarded(self, stage: str, run: Callable[[], Any]) -> Any:
        self._fault(stage)
        return run()

    def _fault(self, stage: str) -> None:
        fault = self.faults.get(stage)
        if fault is None:
            return
        action, ms = fault
        if action == "raise":
            raise RuntimeError(f"injected fault in {stage}")
        time.sleep(ms / 1000.0)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    out = {stage: 0.0 for stage in ("retrieval", "features", "ranking", "rerank")}
    out.update({k: round(v, 3) for k, v in timings.items()})
    return out
