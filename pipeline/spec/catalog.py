"""The names a spec may use: metrics (with their direction), model families.

The spec layer owns this catalogue so that it can check names without importing
the code that computes them; `pipeline.metrics` registers its implementations
against these names and a test keeps the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    description: str


_CLASSIFICATION = [
    MetricInfo("auc", True, "area under the ROC curve"),
    MetricInfo("pr_auc", True, "area under the precision-recall curve"),
    MetricInfo("log_loss", False, "mean negative log-likelihood"),
    MetricInfo("brier", False, "mean squared error of the probability"),
    MetricInfo("accuracy", True, "share of correct labels at the threshold"),
    MetricInfo("precision", True, "precision at the spec's threshold"),
    MetricInfo("recall", True, "recall at the spec's threshold"),
    MetricInfo("f1", True, "F1 at the spec's threshold"),
    MetricInfo("precision_at_k", True, "precision of the top-k list"),
    MetricInfo("flagged_share", False, "share of entities above the threshold"),
    MetricInfo("tpr_gap", False, "max gap in true positive rate across groups"),
    MetricInfo("fpr_gap", False, "max gap in false positive rate across groups"),
    MetricInfo("auc_gap", False, "max gap in AUC across groups"),
    MetricInfo("precision_gap", False, "max gap in precision at the threshold across groups"),
    MetricInfo("flagged_share_gap", False, "max gap in the share flagged across groups"),
    MetricInfo("equalized_odds_gap", False, "max of the TPR and FPR gaps across groups (equalized odds)"),
]

_RANKING_AT_K = {
    "recall": MetricInfo("recall@K", True, "share of held-out items retrieved in the top K"),
    "hit": MetricInfo("hit@K", True, "share of users with a held-out item in the top K"),
    "ndcg": MetricInfo("ndcg@K", True, "normalised discounted cumulative gain at K"),
    "precision": MetricInfo("precision@K", True, "share of the top K that are held-out items"),
    "mrr": MetricInfo("mrr@K", True, "mean reciprocal rank of the first hit within K"),
    "hit_disparity": MetricInfo("hit_disparity@K", False, "max gap in hit@K across user groups"),
    "ndcg_disparity": MetricInfo("ndcg_disparity@K", False, "max gap in ndcg@K across user groups"),
    "coverage": MetricInfo("coverage@K", True, "share of the catalogue in anyone's top K"),
}

# Causal evaluation (pipeline.causal), for either task: `ate` is the spec's primary estimator.
_CAUSAL = [
    MetricInfo("ate", True, "causal average treatment effect (the spec's primary estimator, doubly robust by default)"),
    *(
        MetricInfo(
            f"ate_{e}{bound}", True, f"average treatment effect by {e}{' (' + bound[1:] + ' bound)' if bound else ''}"
        )
        for e in ("naive", "ipw", "snipw", "dr")
        for bound in ("", "_low", "_high")
    ),
    MetricInfo("ab_effect", True, "treatment minus holdout mean outcome in the declared experiment"),
    MetricInfo("ab_effect_low", True, "lower bound of the A/B effect's interval"),
    MetricInfo("ab_effect_high", True, "upper bound of the A/B effect's interval"),
    MetricInfo("ab_p_value", False, "two-sided p-value of the A/B effect"),
    MetricInfo("ab_mde", False, "minimum detectable effect for the experiment's sample size"),
]

# Group metrics also exist per grouping, as `name[columns]`
# (e.g. tpr_gap[age_band], exposure_equity[is_new_creator*region]).
GROUPED_METRICS = frozenset(
    {"tpr_gap", "fpr_gap", "auc_gap", "precision_gap", "flagged_share_gap", "equalized_odds_gap"}
    | {"exposure_equity", "hit_disparity", "ndcg_disparity"}
)
_GROUPING = re.compile(r"^(.+)\[([A-Za-z_][A-Za-z0-9_]*(?:\*[A-Za-z_][A-Za-z0-9_]*)*)\]$")

_RECOMMENDATION = [
    MetricInfo("mrr", True, "mean reciprocal rank of the first hit"),
    MetricInfo("coverage", True, "share of the catalogue recommended to anyone"),
    MetricInfo("exposure_equity", True, "worst group's exposure relative to its share"),
    MetricInfo("exposure_gini", False, "Gini coefficient of creator exposure"),
    MetricInfo("skew_psi", False, "training-serving skew as PSI"),
]

_SERVING = [
    MetricInfo("p50_latency_ms", False, "median latency in milliseconds"),
    MetricInfo("p95_latency_ms", False, "95th percentile latency in milliseconds"),
    MetricInfo("p99_latency_ms", False, "99th percentile latency in milliseconds"),
    MetricInfo("error_rate", False, "share of failed requests"),
    MetricInfo("ctr", True, "click-through rate"),
    MetricInfo("churn_rate", False, "observed churn rate"),
    MetricInfo("rank_correlation", True, "Spearman correlation of champion and challenger outputs"),
]

_AT_K = re.compile(r"^([a-z_]+)@(\d+)$")

TASKS = ("binary_classification", "recommendation")


def metrics_for(task: str) -> dict[str, MetricInfo]:
    """Plain (non-@K) metric names valid for a task, serving metrics included."""
    base = _CLASSIFICATION if task == "binary_classification" else _RECOMMENDATION
    return {m.name: m for m in [*base, *_CAUSAL, *_SERVING]}


def metric_info(name: str, task: str) -> MetricInfo | None:
    """Look a metric up, understanding the 'name@K' form for ranking metrics."""
    plain = metrics_for(task)
    grouped = _GROUPING.match(name)
    if grouped:
        base = metric_info(grouped.group(1), task)
        if base is None or base.name.split("@")[0] not in GROUPED_METRICS:
            return None
        return MetricInfo(name, base.higher_is_better, f"{base.description} ({grouped.group(2)} groups)")
    if name in plain:
        return plain[name]
    match = _AT_K.match(name)
    if match and task == "recommendation" and match.group(1) in _RANKING_AT_K:
        info = _RANKING_AT_K[match.group(1)]
        return MetricInfo(name, info.higher_is_better, info.description.replace("K", match.group(2)))
    return None


_UNIT_INTERVAL = frozenset(
    {"auc", "pr_auc", "brier", "accuracy", "precision", "recall", "f1", "precision_at_k", "flagged_share"}
    | {"tpr_gap", "fpr_gap", "auc_gap", "precision_gap", "flagged_share_gap", "equalized_odds_gap"}
    | {"mrr", "coverage", "exposure_gini", "error_rate", "ctr", "churn_rate", "ab_p_value"}
    | {"hit", "ndcg", "hit_disparity", "ndcg_disparity"}
)
_NON_NEGATIVE = frozenset(
    {"log_loss", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "skew_psi", "exposure_equity", "ab_mde"}
)


def metric_range(name: str) -> tuple[float | None, float | None]:
    """(lowest, highest) value a metric can take; None where it is unbounded (effects such as `ate`).

    A gate bound outside this range either never passes or never fails, so `keel check` refuses it
    (a percentage written for a share, `error_rate: {max: 5}`, would otherwise disable the gate).
    """
    grouped = _GROUPING.match(name)
    base = (grouped.group(1) if grouped else name).split("@")[0]
    if base in _UNIT_INTERVAL:
        return 0.0, 1.0
    if base == "rank_correlation":
        return -1.0, 1.0
    if base in _NON_NEGATIVE:
        return 0.0, None
    return None, None


def metric_names(task: str) -> list[str]:
    """Names to suggest for a typo (with @10 as the example K)."""
    names = list(metrics_for(task))
    if task == "recommendation":
        names += [f"{k}@10" for k in _RANKING_AT_K] + ["recall@500"]
    return names


MODEL_FAMILIES = {
    "binary_classification": ("lightgbm", "logistic"),
    "recommendation": ("two_tower",),
}
RANKER_FAMILIES = ("lightgbm_ranker", "mlp_ranker")

# Names a recommendation spec's `ranker.features` may use: computed per (user, candidate) by
# pipeline.recsys.ranking_features (kept equal to its FEATURES by a unit test; spec/ imports nothing of ours).
# Declared item attributes (data.items.attributes) add their own: `attribute_feature_names`.
RANKING_FEATURES = (
    "user_positives",
    "item_popularity",
    "retrieval_score",
    "retrieval_rank",
    "source",
    "history_cooccurrence",
    "user_impressions",
    "item_impressions",
    "item_ctr",
    "impression_cooccurrence",
)


def attribute_feature_names(attributes: dict[str, str], with_users: bool) -> list[str]:
    """Ranking features of declared item attributes (name -> type), as pipeline.recsys.attributes names them.

    with_users: the spec declares a user table, whose column of a categorical attribute's name
    would give `user_A` and `same_A` (checked again when the table is loaded).
    """
    names: list[str] = []
    for name, kind in attributes.items():
        if kind == "categorical":
            names.append(f"item_{name}")
            names += [f"user_{name}", f"same_{name}"] if with_users else []
            names.append(f"user_{name}_affinity")
        elif kind == "multi":
            names.append(f"user_{name}_affinity")
        elif kind == "numeric":
            names.append(f"item_{name}")
        else:
            names.append(f"item_{name}_age_days")
    return names
