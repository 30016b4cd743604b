"""The spec's `fairness` and `causal` sections for a run: compute, merge into gate inputs, render.

Flows call these (flows/lifecycle.py for classification, flows/recsys.py for recommendation);
nothing here knows about Prefect. The gate-able scalars join the run's test metrics, so
they are stored in the bundle manifest and `vs: champion` / `vs: baseline` gates work on
them like on any metric; metrics without enough data are passed to the gates by name so
they report "insufficient data" instead of failing as "not computed".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.data.errors import DataSourceError
from pipeline.fairness.classification import classification_fairness
from pipeline.fairness.groups import groupings
from pipeline.fairness.recommendation import exposure_matrix, recommendation_fairness
from pipeline.fairness.report import CHART, render_markdown
from pipeline.fairness.result import FairnessReport
from pipeline.recsys.metrics import ranking_metrics
from pipeline.spec.schema import Spec

if TYPE_CHECKING:
    from pipeline.causal.evaluate import CausalReport


@dataclass
class Sections:
    fairness: FairnessReport | None = None
    causal: CausalReport | None = None
    guarantee: dict[str, Any] | None = None  # recommendation: with vs without the minimum-exposure floors
    chart: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def declared(self) -> bool:
        return self.fairness is not None or self.causal is not None or bool(self.notes)

    def metrics(self) -> dict[str, float]:
        """Gate-able scalars with a value (the rest are in `insufficient`)."""
        out: dict[str, float] = {}
        for part in (self.fairness, self.causal):
            if part is not None:
                out |= {k: v for k, v in part.metrics.items() if v is not None and math.isfinite(v)}
        return out

    def evidence(self) -> dict[str, Any]:
        """metric -> Evidence for the gates: its interval, and the groups a fairness metric left out
        (with their point estimates and the metric's value with them in)."""
        from pipeline.gates.evaluate import Evidence

        out: dict[str, Any] = {}
        f = self.fairness
        if f is not None:
            confidence = f.extra.get("confidence")
            for name in f.metrics:
                low, high = f.intervals.get(name, (None, None))
                method = f"bootstrap of the groups ({confidence:.0%})" if confidence and low is not None else ""
                out[name] = Evidence(
                    low=low,
                    high=high,
                    method=method,
                    excluded=tuple(f.excluded.get(name, ())),
                    with_excluded=f.with_excluded.get(name),
                )
        c = self.causal
        if c is not None:
            for name in c.metrics:
                low, high = c.metrics.get(f"{name}_low"), c.metrics.get(f"{name}_high")
                if low is not None and high is not None:
                    out[name] = Evidence(low=low, high=high, method="the estimator's interval")
        return out

    def insufficient(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in (self.fairness, self.causal):
            if part is not None:
                out |= dict(part.insufficient)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "fairness": self.fairness.to_dict() if self.fairness else None,
            "causal": self.causal.to_dict() if self.causal else None,
            "exposure_guarantee": self.guarantee,
            "chart": self.chart,
            "notes": list(self.notes),
        }


def classification_sections(
    spec: Spec, y: np.ndarray, p: np.ndarray, test: pd.DataFrame, base_dir: Path, run_path: Path
) -> Sections:
    """Group metrics of the test split at the spec's threshold, and the causal section."""
    out = Sections()
    f = spec.fairness
    if f is not None:
        out.fairness = classification_fairness(
            y,
            p,
            test,
            groupings(f.groups, spec.evaluation.group_columns),
            spec.evaluation.threshold,
            min_group_size=f.min_group_size,
            min_group_events=f.min_group_events,
            replicates=f.bootstrap,
            confidence=f.confidence,
            seed=f.seed,
        )
        out.fairness.extra["confidence"] = f.confidence
    return _finish(spec, out, base_dir, run_path)


def recommendation_sections(spec: Spec, recommender, ex, tables, base_dir: Path, run_path: Path) -> Sections:
    """Fairness of the final lists of the evaluated test users, with and without the exposure floors."""
    out = Sections()
    f = spec.fairness
    if f is not None:
        users = ex.test_users
        relevant = ex.test_relevant[users]
        width = max(10, spec.evaluation.top_k, f.k)  # the evaluation's list length: the same lists it scored
        lists = _fresh(recommender).recommend(users, ex.seen, width)["final"]
        user_frame = _user_groups(spec, tables, ex.user_map.ids[users], f.groups)
        item_frame = _first_values(spec, _aligned(tables.items, spec.data.items.id, ex.item_map.ids))
        kwargs = dict(
            k=f.k,
            reference=f.exposure_reference,
            min_group_size=f.min_group_size,
            min_group_items=f.min_group_items,
            replicates=f.bootstrap,
            confidence=f.confidence,
            seed=f.seed,
        )
        out.fairness = recommendation_fairness(
            lists, relevant, user_frame, item_frame, groupings(f.groups, []), f.creator_groups, **kwargs
        )
        out.fairness.extra["confidence"] = f.confidence
        if spec.reranker is not None and spec.reranker.min_exposure_share > 0 and recommender.attribute is not None:
            out.guarantee = _guarantee(spec, recommender, ex, users, relevant, lists, width)
    return _finish(spec, out, base_dir, run_path)


def _first_values(spec: Spec, items: pd.DataFrame) -> pd.DataFrame:
    """A multi-valued attribute groups items by its first value ("Action|Comedy" is Action), as the
    re-ranker and the exposure floors do, not by the raw string (docs/adr/0033-item-attributes.md)."""
    from pipeline.recsys.attributes import declared, one_value

    multi = {n: a for n, a in declared(spec).items() if a.type == "multi" and n in items.columns}
    if not multi:
        return items
    return items.assign(**{n: one_value(items[n], a) for n, a in multi.items()})


def _finish(spec: Spec, out: Sections, base_dir: Path, run_path: Path) -> Sections:
    # imported here: scikit-learn's estimators and matplotlib cost ~0.4 s of every `keel run` start-up,
    # and only a spec with a causal or fairness section needs them
    from pipeline.causal.evaluate import causal_evaluation
    from pipeline.fairness.chart import write_chart

    if spec.causal is not None:
        out.causal = causal_evaluation(spec.causal, base_dir)
    if out.declared:
        chart = write_chart(run_path / CHART, out.fairness, out.causal.estimates if out.causal else None)
        out.chart = str(chart) if chart else None
    return out


def _fresh(recommender):
    """A copy whose re-ranking counters start at zero, so the run's own counts stay as evaluated."""
    return dataclasses.replace(recommender, rerank_stats={"lists": 0, "skipped": 0, "filled_by_guarantee": 0})


def _guarantee(spec: Spec, recommender, ex, users, relevant, lists, width: int) -> dict[str, Any]:
    """Worst-group exposure and Hit@k of the final lists with the floors and with min_exposure_share 0."""
    assert spec.reranker is not None
    off = spec.model_copy(update={"reranker": spec.reranker.model_copy(update={"min_exposure_share": 0.0})})
    without = dataclasses.replace(_fresh(recommender), spec=off).recommend(users, ex.seen, width)["final"]
    codes, labels = pd.factorize(pd.Series(recommender.attribute).astype(str), sort=True)
    catalog = np.bincount(codes, minlength=len(labels)) / len(codes)
    k = spec.fairness.k if spec.fairness else 10
    result = {"attribute": spec.reranker.diversity_attribute, "min_exposure_share": spec.reranker.min_exposure_share}
    result["groups"] = {str(label): {"catalog_share": float(catalog[g])} for g, label in enumerate(labels)}
    for name, top in (("with_guarantee", lists), ("without_guarantee", without)):
        exposure = np.asarray(exposure_matrix(top, codes, len(labels), k).sum(axis=0)).ravel()
        share = exposure / exposure.sum()
        ratio = np.divide(share, catalog, out=np.full(len(share), np.nan), where=catalog > 0)
        worst = int(np.nanargmin(ratio))
        for g, label in enumerate(labels):
            result["groups"][str(label)][name] = float(share[g])
        result[name] = {
            "worst_group": str(labels[worst]),
            "worst_group_exposure_share": float(share[worst]),
            "worst_group_catalog_share": float(catalog[worst]),
            "exposure_equity": float(ratio[worst]),
            f"hit@{k}": float(ranking_metrics(top, relevant, [k])[f"hit@{k}"]),
        }
    before, after = result["without_guarantee"][f"hit@{k}"], result["with_guarantee"][f"hit@{k}"]
    result[f"relative_hit@{k}_change"] = (after - before) / before if before else None
    return result


def _aligned(table: pd.DataFrame, id_column: str, ids: np.ndarray) -> pd.DataFrame:
    return table.set_index(id_column).reindex(pd.Index(ids)).reset_index(names=id_column)


def _user_groups(spec: Spec, tables, ids: np.ndarray, declared: list[list[str]]) -> pd.DataFrame:
    if tables.users is None or spec.data.users is None:
        if declared:
            raise DataSourceError("fairness.groups: user groups need the user table (data.users)")
        return pd.DataFrame(index=range(len(ids)))
    return _aligned(tables.users, spec.data.users.id, ids)


__all__ = ["CHART", "Sections", "classification_sections", "recommendation_sections", "render_markdown"]
