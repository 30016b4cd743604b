"""Checks that need the whole spec: names that must exist, orders that must hold.

Each check returns Problems (never raises), so one run reports them all. A check
is a small function of the typed Spec; `CHECKS` lists them in report order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pipeline.spec.catalog import MODEL_FAMILIES, metric_info, metric_names
from pipeline.spec.compose import Provenance
from pipeline.spec.errors import Problem, unknown
from pipeline.spec.expressions import check_expressions
from pipeline.spec.item_checks import check_item_attributes, ranking_feature_names
from pipeline.spec.schema import RECOMMENDATION_SPLITS, TABULAR_SPLITS, Spec

Finding = tuple[str, str]
"""(key path, reason): semantic checks speak in key paths; provenance adds file:line."""


def check_semantics(spec: Spec, provenance: Provenance) -> list[Problem]:
    return [provenance.problem(key, reason) for check in CHECKS for key, reason in check(spec)]


def _columns(spec: Spec) -> list[str]:
    return list(spec.contract.columns)


def _feature_names(spec: Spec) -> list[str]:
    return [*spec.contract.columns, *spec.features.derived]


def _must_exist(key: str, name: str | None, known: Iterable[str], kind: str) -> Iterator[Finding]:
    known = list(known)
    if name is not None and name not in known:
        yield key, unknown(kind, name, known)


def check_data_roles(spec: Spec) -> Iterator[Finding]:
    columns = _columns(spec)
    for role in ("entity_id", "timestamp", "label", "user", "item"):
        yield from _must_exist(f"data.{role}", getattr(spec.data, role), columns, "contract column")
    if spec.task == "recommendation":
        for role in ("user", "item", "timestamp"):
            if getattr(spec.data, role) is None:
                yield f"data.{role}", f"a recommendation spec needs data.{role} (the interaction log's {role} column)"
        if spec.data.items is None:
            yield "data.items", "a recommendation spec needs data.items: the item table is the catalog ranked"


def check_split(spec: Spec) -> Iterator[Finding]:
    """The split method must be possible with the declared columns (before any run starts)."""
    split, data = spec.data.split, spec.data
    methods = RECOMMENDATION_SPLITS if spec.task == "recommendation" else TABULAR_SPLITS
    if split.method is not None and split.method not in methods:
        reason = f"split method '{split.method}' does not fit task {spec.task} (use {', '.join(methods)})"
        yield "data.split.method", reason
    if spec.task == "recommendation":
        if split.last_n is not None and split.method != "per_user_time":
            yield "data.split.last_n", "last_n is used by split method 'per_user_time' only"
        return
    if split.last_n is not None:
        yield "data.split.last_n", "last_n is for interaction logs (split method 'per_user_time')"
    yield from _must_exist("data.split.group_column", split.group_column, _columns(spec), "contract column")
    if split.method == "time" and data.timestamp is None:
        yield "data.split.method", "split method 'time' needs data.timestamp; else use stratified, random or group"
    if split.method == "group" and split.group_column is None and data.entity_id is None:
        yield "data.split.method", "split method 'group' needs data.split.group_column (or data.entity_id)"
    if split.method == "stratified" and data.label is None:
        yield "data.split.method", "split method 'stratified' needs data.label (the classes it keeps balanced)"
    if split.group_column is not None and split.method != "group":
        yield "data.split.group_column", "group_column is used by split method 'group' only: set data.split.method"


def check_retrieval(spec: Spec) -> Iterator[Finding]:
    """Retrieval sources and same-run baselines: recommendation only, unique names, no tower as a baseline."""
    if spec.retrieval is not None and spec.task != "recommendation":
        yield "retrieval", "retrieval sources are for recommendation specs"
    sources = spec.retrieval.sources if spec.retrieval is not None else []
    names = [source.name or source.type for source in sources]
    for index, name in enumerate(names):
        if name in names[:index]:
            yield f"retrieval.sources.{index}.name", f"two sources are named {name!r}: give one a `name`"
    for index, source in enumerate(sources):
        if source.type == "two_tower" and source.params:
            yield f"retrieval.sources.{index}.params", "the two-tower's params are model.params"
    for index, source in enumerate(spec.evaluation.baselines):
        if source.type == "two_tower":
            yield f"evaluation.baselines.{index}.type", "the two-tower is part of the system, not a baseline"


def check_label_and_time(spec: Spec) -> Iterator[Finding]:
    """The positive value must be a value the label may take; an epoch unit needs a datetime column."""
    data, columns = spec.data, spec.contract.columns
    label = columns.get(data.label) if data.label else None
    allowed = label.allowed if label is not None and data.rating_threshold is None else None
    if allowed and str(data.positive) not in {str(v) for v in allowed}:
        values = ", ".join(repr(v) for v in allowed)
        yield "data.positive", f"{data.positive!r} is not among the label's allowed values ({values})"
    if data.timestamp_unit is not None:
        if data.timestamp is None:
            yield "data.timestamp_unit", "timestamp_unit needs data.timestamp (the column holding epoch numbers)"
        elif data.timestamp in columns and columns[data.timestamp].dtype != "datetime":
            reason = f"timestamp_unit turns epoch numbers into times: declare {data.timestamp} with dtype datetime"
            yield f"contract.columns.{data.timestamp}.dtype", reason
    if spec.masked_churners is not None and data.entity_id is None:
        yield "masked_churners", "masked churners compare entities across snapshots: set data.entity_id"


def check_contract(spec: Spec) -> Iterator[Finding]:
    for name, column in spec.contract.columns.items():
        key = f"contract.columns.{name}"
        if column.min is not None and column.max is not None and column.min > column.max:
            yield f"{key}.min", f"min {column.min} is above max {column.max}"
        if (column.min is not None or column.max is not None) and column.dtype not in ("int", "float"):
            yield f"{key}.dtype", f"min/max need a numeric dtype (int or float), not {column.dtype}"
        if column.allowed is not None and column.dtype in ("float", "datetime"):
            yield f"{key}.allowed", f"allowed values make no sense for dtype {column.dtype}"
        if column.allowed is not None and not column.allowed:
            yield f"{key}.allowed", "an empty list of allowed values rejects every row"
    profile = spec.contract.profile
    if profile.psi_warning >= profile.psi_alert:
        reason = f"psi_warning {profile.psi_warning} must be below psi_alert {profile.psi_alert}"
        yield "contract.profile.psi_warning", reason


def check_derived(spec: Spec) -> Iterator[Finding]:
    for feature, reason in check_expressions(spec.features.derived, _columns(spec)):
        yield f"features.derived.{feature}.expr", reason


def _model_findings(spec: Spec, key: str, model) -> Iterator[Finding]:
    families = MODEL_FAMILIES[spec.task]
    if model.family not in families:
        reason = f"model family '{model.family}' does not fit task {spec.task} (use {', '.join(families)})"
        yield f"{key}.family", reason
    known = _feature_names(spec)
    leaks = {spec.data.label: "the label", spec.data.entity_id: "the entity id"}
    for index, feature in enumerate(model.features):
        if feature in leaks and spec.task == "binary_classification":
            yield f"{key}.features.{index}", f"'{feature}' is {leaks[feature]}; using it as a feature leaks the answer"
        elif spec.task == "recommendation" and spec.data.users is not None:
            continue  # user-tower features may come from the user table, checked when it is loaded
        else:
            yield from _must_exist(f"{key}.features.{index}", feature, known, "feature")
    if len(set(model.features)) != len(model.features):
        yield f"{key}.features", "a feature is listed twice"


def check_models(spec: Spec) -> Iterator[Finding]:
    yield from _model_findings(spec, "model", spec.model)
    for index, candidate in enumerate(spec.candidates):
        yield from _model_findings(spec, f"candidates.{index}", candidate)
    if spec.selection.metric is not None:
        yield from _metric("selection.metric", spec.selection.metric, spec)
    known = _feature_names(spec)
    if spec.ranker is not None:
        # a ranker scores (user, candidate) pairs: its features are the ranking features, not log columns
        ranker_known = ranking_feature_names(spec) if spec.task == "recommendation" else known
        for index, feature in enumerate(spec.ranker.features):
            yield from _must_exist(f"ranker.features.{index}", feature, ranker_known, "ranking feature")
    if spec.reranker is not None and spec.task != "recommendation":  # recommendation: an item-table column
        yield from _must_exist("reranker.diversity_attribute", spec.reranker.diversity_attribute, known, "column")
    for index, column in enumerate(spec.evaluation.group_columns):
        yield from _must_exist(f"evaluation.group_columns.{index}", column, _columns(spec), "contract column")


def _metric(key: str, name: str, spec: Spec) -> Iterator[Finding]:
    if metric_info(name, spec.task) is None:
        yield key, unknown(f"metric for task {spec.task}", name, metric_names(spec.task))


def check_gates(spec: Spec) -> Iterator[Finding]:
    for name, gate in spec.gates.items():
        key = f"gates.{name}"
        metric = gate.metric or name
        yield from _metric(f"{key}.metric" if gate.metric else key, metric, spec)
        if gate.vs is None:
            if gate.min is None and gate.max is None:
                yield key, "an absolute gate needs 'min' or 'max' (or 'vs: champion' with 'max_drop')"
            if gate.max_drop is not None or gate.max_relative_drop is not None:
                yield key, "'max_drop'/'max_relative_drop' need 'vs: champion' or 'vs: baseline'"
        elif gate.max_drop is None and gate.max_relative_drop is None:
            yield key, f"a gate 'vs: {gate.vs}' needs 'max_drop' or 'max_relative_drop'"
        yield from _same_run_baseline(spec, key, gate)
        if gate.min is not None and gate.max is not None and gate.min > gate.max:
            yield f"{key}.min", f"min {gate.min} is above max {gate.max}: the gate can never pass"


def _same_run_baseline(spec: Spec, key: str, gate) -> Iterator[Finding]:
    """`baseline.name` names a baseline this run fits: recommendation's evaluation.baselines (name or type)."""
    name = gate.baseline.name
    if name is None:
        return
    if gate.vs != "baseline":
        yield f"{key}.baseline.name", "a same-run baseline is compared only with 'vs: baseline'"
    elif spec.task != "recommendation":
        yield f"{key}.baseline.name", f"task {spec.task} fits no same-run baselines: drop 'name' (promoted history)"
    else:
        known = [b.name or b.type for b in spec.evaluation.baselines]
        if name not in known:
            yield f"{key}.baseline.name", unknown("same-run baseline (evaluation.baselines)", name, known)


def check_rollout(spec: Spec) -> Iterator[Finding]:
    if spec.rollout is None:
        return
    seen: set[str] = set()
    previous = None
    for index, stage in enumerate(spec.rollout.stages):
        key = f"rollout.stages.{index}"
        if stage.name in seen:
            yield f"{key}.name", f"stage name '{stage.name}' is used twice"
        seen.add(stage.name)
        if previous is not None and stage.traffic < previous.traffic:
            yield (
                f"{key}.traffic",
                (
                    f"stage traffic must never decrease: '{stage.name}' {stage.traffic:.0%} "
                    f"after '{previous.name}' {previous.traffic:.0%}"
                ),
            )
        if stage.traffic > 0 and stage.shadow_share < 1.0:
            yield (
                f"{key}.shadow_share",
                f"shadow_share {stage.shadow_share:g} on '{stage.name}' has no effect: only a traffic 0 (shadow) "
                f"stage shadows requests; remove it or set traffic: 0",
            )
        for check_index, check in enumerate(stage.checks):
            yield from _metric(f"{key}.checks.{check_index}", check, spec)
            if check == spec.rollout.rollback.evaluation.metric and not 0 < stage.traffic < 1:
                yield (
                    f"{key}.checks.{check_index}",
                    f"'{check}' compares champion and challenger, which only a stage with 0 < traffic < 1 serves "
                    f"side by side: listed on '{stage.name}' ({stage.traffic:.0%}) it would hold the stage forever",
                )
        previous = stage
    yield from _metric("rollout.rollback.evaluation.metric", spec.rollout.rollback.evaluation.metric, spec)


def check_triggers(spec: Spec) -> Iterator[Finding]:
    triggers = spec.triggers
    if triggers.drift is not None:
        for index, feature in enumerate(triggers.drift.features):
            yield from _must_exist(f"triggers.drift.features.{index}", feature, _feature_names(spec), "feature")
        if triggers.drift.psi_above >= triggers.drift.critical_psi:
            yield (
                "triggers.drift.critical_psi",
                (f"critical_psi {triggers.drift.critical_psi} must be above psi_above {triggers.drift.psi_above}"),
            )
    if triggers.performance is not None:
        yield from _metric("triggers.performance.metric", triggers.performance.metric, spec)
        if triggers.performance.floor is None and triggers.performance.max_relative_decline is None:
            yield "triggers.performance", "a performance trigger needs 'floor' or 'max_relative_decline'"
    if triggers.schedule is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(triggers.schedule.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            reason = f"unknown timezone '{triggers.schedule.timezone}' (e.g. UTC, Europe/Berlin)"
            yield "triggers.schedule.timezone", reason


def check_monitoring(spec: Spec) -> Iterator[Finding]:
    monitoring = spec.monitoring
    yield from _must_exist("monitoring.segment_column", monitoring.segment_column, _columns(spec), "contract column")
    if not monitoring.psi_warning < monitoring.psi_alert < monitoring.psi_critical:
        yield (
            "monitoring.psi_warning",
            (
                f"thresholds must rise: psi_warning {monitoring.psi_warning} < psi_alert {monitoring.psi_alert} "
                f"< psi_critical {monitoring.psi_critical}"
            ),
        )


def check_monitored_features(spec: Spec) -> Iterator[Finding]:
    for index, feature in enumerate(spec.monitoring.features):
        yield from _must_exist(f"monitoring.features.{index}", feature, _feature_names(spec), "feature")


def check_fairness_groups(spec: Spec) -> Iterator[Finding]:
    """Classification groups are columns of the scored rows; recommendation groups live in side tables."""
    if spec.fairness is None or spec.task != "binary_classification":
        return
    for index, group in enumerate(spec.fairness.groups):
        for position, column in enumerate(group):
            yield from _must_exist(f"fairness.groups.{index}.{position}", column, _feature_names(spec), "column")


def check_masked_churners(spec: Spec) -> Iterator[Finding]:
    masked = spec.masked_churners
    if masked is None:
        return
    if spec.task != "binary_classification":
        yield "masked_churners", f"masked churners are listed by binary_classification runs, not {spec.task}"
    yield from _must_exist("masked_churners.feature", masked.feature, _feature_names(spec), "feature")
    feature = spec.contract.columns.get(masked.feature)
    if feature is not None and feature.dtype not in ("int", "float"):
        reason = f"'{masked.feature}' is {feature.dtype}: a change needs a numeric feature (int, float or derived)"
        yield "masked_churners.feature", reason
    yield from _must_exist("masked_churners.segment", masked.segment, _columns(spec), "contract column")
    segment = spec.contract.columns.get(masked.segment)
    if segment is not None and segment.dtype in ("float", "datetime"):
        reason = f"'{masked.segment}' is {segment.dtype}: a segment needs a category, str, int or bool column"
        yield "masked_churners.segment", reason


CHECKS: list[Callable[[Spec], Iterator[Finding]]] = [
    check_data_roles,
    check_split,
    check_retrieval,
    check_item_attributes,
    check_label_and_time,
    check_contract,
    check_derived,
    check_models,
    check_gates,
    check_rollout,
    check_triggers,
    check_monitoring,
    check_monitored_features,
    check_fairness_groups,
    check_masked_churners,
]
