"""The typed schema of a Keel spec.

Hydra composes the YAML; these pydantic models type-check the result. Pydantic
rather than OmegaConf structured configs because it reports *every* error of a
file in one pass, with constraints (ranges, enums, patterns) on each field
(see docs/adr/0002-spec-schema-pydantic.md). Every model forbids unknown keys so a
typo is an error with a suggestion, never a silently ignored setting.

Field order is the order `keel show` prints, so keep related keys together.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_serializer, model_validator

from pipeline.spec.types import Column, Cron, Duration, Name


class Strict(BaseModel):
    """Base for every spec section: unknown keys are errors, values are validated on assignment.

    Floats must be finite ('nan' or '.inf' as a bound would silently disable the rule it sets).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# ---------------------------------------------------------------- data


class ScenarioSpec(Strict):
    """Knobs a synthetic generator plants in its data, so tests know the truth."""

    drift: dict[Column, float] = Field(default_factory=dict, description="feature -> shift in standard deviations")
    unit_bug: dict[Column, float] = Field(
        default_factory=dict, description="feature -> factor its values are scaled by"
    )
    segment_shift: dict[str, dict[Column, float]] = Field(
        default_factory=dict, description="segment value -> {feature: shift in standard deviations}"
    )
    corrupt_fraction: float = Field(0.0, ge=0, le=1, description="share of rows given a contract violation")
    items: int | None = Field(
        None, ge=1, description="catalog size (synthetic:streamrec); absent: the generator's default rows // 50"
    )
    users: int | None = Field(
        None, ge=1, description="user count (synthetic:streamrec); absent: the generator's default rows // 20"
    )
    bursty_users: float = Field(
        0.0, ge=0, le=1, description="synthetic:streamrec: share of users whose activity comes in a few short bursts"
    )
    item_tail: float | None = Field(
        None, gt=0, le=3, description="synthetic:streamrec: Zipf exponent of item popularity (absent: 0.9)"
    )


class SourceSpec(Strict):
    """Where a dataset comes from: a Parquet/CSV path or `synthetic:<generator>`."""

    source: str = Field(description="path to .parquet/.csv, or synthetic:streamflow / synthetic:streamrec")
    table: str | None = Field(None, description="table of a multi-table source (synthetic:streamrec)")
    rows: int = Field(20_000, ge=0, le=1_000_000_000, description="rows to generate (synthetic sources)")
    seed: int = Field(0, description="random seed: synthetic data; for data, also its split, CV folds and model")
    scenario: ScenarioSpec = Field(default_factory=ScenarioSpec)
    csv_delimiter: str = ","


SplitMethod = Literal["random", "stratified", "time", "group", "global_time", "per_user_time", "leave_one_out"]
TABULAR_SPLITS = ("random", "stratified", "time", "group")
RECOMMENDATION_SPLITS = ("global_time", "time", "per_user_time", "leave_one_out", "random")


class SplitSpec(Strict):
    """How rows are cut into train/valid/test. Absent method: `time` with a timestamp, else `stratified`."""

    method: SplitMethod | None = Field(
        None,
        description="tables: random, stratified (by label), time (needs data.timestamp) or group (no group in two "
        "parts); absent: time when data.timestamp is set, else stratified. Interaction logs: global_time (= time, "
        "the default), per_user_time, leave_one_out or random (pipeline/recsys/splits.py)",
    )
    group_column: Column | None = Field(
        None, description="method group: the column whose values never straddle parts; absent: data.entity_id"
    )
    valid_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    last_n: int | None = Field(
        None, ge=1, description="per_user_time: each user's last N interactions are test (the N before: valid)"
    )
    min_interactions: int = Field(
        3, ge=2, description="per_user_time / leave_one_out: users with fewer interactions (positives) stay in train"
    )


def split_method(split: SplitSpec, timestamp: str | None) -> SplitMethod:
    """The method that applies: the declared one, else time with a timestamp and stratified without."""
    if split.method is not None:
        return split.method
    return "time" if timestamp else "stratified"


class TableSpec(Strict):
    """A side table of a recommendation log (items, users): one row per id."""

    source: str | None = Field(
        None, description="path to .parquet/.csv, or synthetic:<generator>; absent: `table` of data's own source"
    )
    table: str | None = Field(None, description="table of a multi-table source (synthetic:streamrec: items, users)")
    id: Column = Field(description="the column holding the id the interaction log refers to")
    csv_delimiter: str = ","


AttributeType = Literal["categorical", "numeric", "timestamp", "multi"]


class AttributeSpec(Strict):
    """One item-table column's kind: what the ranker, the re-ranker, cold start and fairness may do with it."""

    type: AttributeType
    delimiter: str | None = Field(None, min_length=1, description="multi: the separator of the values, e.g. '|'")

    @model_validator(mode="after")
    def _delimiter_for_multi(self) -> AttributeSpec:
        if self.type == "multi" and self.delimiter is None:
            raise ValueError("a multi attribute needs a delimiter (e.g. {type: multi, delimiter: '|'})")
        if self.type != "multi" and self.delimiter is not None:
            raise ValueError(f"delimiter applies to type multi only, not {self.type}")
        return self


def _short_attributes_in_json_schema(schema: dict[str, Any]) -> None:
    """A spec FILE may write `genre: categorical` for `{type: categorical}`: editors accept it too."""
    full = schema.get("additionalProperties")
    if isinstance(full, dict):
        short = {"type": "string", "enum": ["categorical", "numeric", "timestamp"]}
        schema["additionalProperties"] = {"anyOf": [short, full]}


class ItemTableSpec(TableSpec):
    """The item table (the catalogue) and which of its columns mean what (docs/adr/0033-item-attributes.md)."""

    attributes: dict[Column, AttributeSpec] = Field(
        default_factory=dict,
        description="item columns by kind: categorical, numeric, timestamp, or {type: multi, delimiter: '|'}; only "
        "declared columns feed ranking features, the re-ranker, cold start and creator fairness groups",
        json_schema_extra=_short_attributes_in_json_schema,
    )

    @field_validator("attributes", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """`genre: categorical` is `genre: {type: categorical}`."""
        if isinstance(value, dict):
            return {k: ({"type": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value


class DataSpec(SourceSpec):
    """The dataset a spec trains and validates on, and the roles of its columns."""

    entity_id: Column | None = Field(
        None, description="the column naming an entity; absent: rows are named by their position (`row`)"
    )
    timestamp: Column | None = None
    timestamp_unit: Literal["s", "ms", "us"] | None = Field(
        None, description="the timestamp column holds epoch numbers in this unit (a datetime contract column)"
    )
    label: Column | None = None
    positive: Any = Field(1, description="the label value that counts as positive")
    split: SplitSpec = Field(default_factory=SplitSpec)
    user: Column | None = Field(None, description="recommendation: the interaction log's user id column")
    item: Column | None = Field(None, description="recommendation: the interaction log's item id column")
    rating_threshold: float | None = Field(
        None, description="recommendation: explicit ratings -> implicit feedback; label >= this is positive"
    )
    items: ItemTableSpec | None = Field(None, description="recommendation: the item table (the full catalog)")
    users: TableSpec | None = Field(None, description="recommendation: the user table (user-tower features)")
    reference: SourceSpec | None = Field(
        None, description="dataset whose profile is the drift reference; absent: profile the data itself"
    )


# ---------------------------------------------------------------- contract

Dtype = Literal["int", "float", "bool", "str", "category", "datetime"]


class ColumnContract(Strict):
    """What one column must look like. Units belong in names too (minutes_watched)."""

    dtype: Dtype
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    allowed: list[Any] | None = Field(None, description="allowed values (str, category, int)")
    unique: bool = False
    description: str = ""


class ProfileSpec(Strict):
    bins: int = Field(10, ge=2, le=100, description="quantile bins of the reference profile")
    psi_warning: float = Field(0.10, gt=0)
    psi_alert: float = Field(0.25, gt=0)


class ContractSpec(Strict):
    name: Name
    on_violation: Literal["quarantine", "fail"] = "quarantine"
    max_quarantine_fraction: float = Field(0.05, ge=0, le=1)
    min_rows: int = Field(1, ge=0, description="fewer accepted rows than this fails validation")
    allow_extra_columns: bool = False
    engine: Literal["keel", "pandera"] = Field(
        "keel", description="bulk validation engine: keel (vectorised) or pandera (lazy)"
    )
    ge_sample_rows: int = Field(10_000, ge=0, description="rows great-expectations checks for Data Docs")
    profile: ProfileSpec = Field(default_factory=ProfileSpec)
    columns: dict[Column, ColumnContract]


# ---------------------------------------------------------------- features


class DerivedFeature(Strict):
    expr: str = Field(description="safe arithmetic over columns, e.g. 'sessions_last_30d / 30'")
    unit: str | None = None
    description: str = ""


class FeaturesSpec(Strict):
    derived: dict[Column, DerivedFeature] = Field(default_factory=dict)


# ---------------------------------------------------------------- models


class LightGBMParams(Strict):
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(300, ge=1)
    max_depth: int = Field(-1, ge=-1)
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    reg_alpha: float = Field(0.0, ge=0)
    reg_lambda: float = Field(0.0, ge=0)
    class_weight: Literal["balanced"] | None = None
    early_stopping_rounds: int | None = Field(None, ge=1)


class LogisticParams(Strict):
    C: float = Field(1.0, gt=0, description="inverse regularisation strength")
    max_iter: int = Field(200, ge=1)
    class_weight: Literal["balanced"] | None = None


SEARCH_MAX_POINTS = 24
"""The most grid points one `search` may hold: each point costs `selection.cv_folds` trainings."""


class SearchGrid(Strict):
    """A grid over a family's params: at least one key, no value twice, at most SEARCH_MAX_POINTS points."""

    @model_validator(mode="after")
    def _check(self) -> SearchGrid:
        lists = self.lists()
        if not lists:
            raise ValueError("search names no params: list values to try, e.g. {num_leaves: [7, 31]}, or remove it")
        repeated = [key for key, values in lists.items() if len({repr(v) for v in values}) < len(values)]
        if repeated:
            raise ValueError(f"search lists a value twice for {', '.join(repeated)}")
        points = math.prod(len(values) for values in lists.values())
        if points > SEARCH_MAX_POINTS:
            sizes = " x ".join(f"{key} {len(values)}" for key, values in lists.items())
            raise ValueError(
                f"search holds {points} points ({sizes}); the most is {SEARCH_MAX_POINTS} (each point costs "
                "selection.cv_folds trainings): shorten a list"
            )
        return self

    @model_serializer(mode="wrap")
    def _named_only(self, handler: Any) -> dict[str, Any]:
        """`keel show` and the spec hash see the keys the grid names, not a null per param."""
        return {key: values for key, values in handler(self).items() if values is not None}

    def lists(self) -> dict[str, list[Any]]:
        """{param: values} for the keys the grid names, in declaration order of the params."""
        return {key: list(getattr(self, key)) for key in type(self).model_fields if getattr(self, key) is not None}


def _search_grid(params: type[BaseModel], family: str) -> type[SearchGrid]:
    """`search` for a family: each of its params' keys takes a non-empty list of values that key accepts.

    Built from the params model, so a typo gets a suggestion and a bad value is refused at its own key.
    """
    fields: dict[str, Any] = {}
    for name, info in params.model_fields.items():
        item = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = (list[item] | None, Field(None, min_length=1, description=f"values of params.{name} to try"))
    return create_model(
        f"{params.__name__.removesuffix('Params')}Search",
        __base__=SearchGrid,
        __module__=__name__,
        __doc__=f"A grid over {family} params, each point cross-validated (docs/adr/0032-parameter-search.md).",
        **fields,
    )


LightGBMSearch = _search_grid(LightGBMParams, "lightgbm")
LogisticSearch = _search_grid(LogisticParams, "logistic")


class TwoTowerParams(Strict):
    embedding_dim: int = Field(32, ge=2, le=1024)
    hidden_dim: int = Field(64, ge=2)
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(512, ge=2)
    learning_rate: float = Field(0.005, gt=0)
    temperature: float = Field(0.05, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    logq_correction: bool = Field(True, description="subtract log(sampling probability) from in-batch logits")
    early_stopping_rounds: int | None = Field(
        None, ge=1, description="stop after this many epochs without a better validation NDCG@10 (epochs: the most)"
    )
    seed: int = 0


def _selector_in_json_schema(schema: dict[str, Any]) -> None:
    """A spec FILE may write `features: all` or a rule (resolved to the list at load): editors accept them too."""
    listed = {key: schema.pop(key) for key in ("type", "items") if key in schema}
    globs = {"type": "array", "items": {"type": "string"}}
    rule = {
        "type": "object",
        "properties": {"include": globs, "exclude": globs, "dtypes": globs},
        "additionalProperties": False,
    }
    schema["anyOf"] = [listed, {"type": "string", "const": "all"}, rule]


class ModelBase(Strict):
    features: list[Column] = Field(
        description="features the model takes, by name; a spec may also write `all` or {include, exclude, dtypes}, "
        "resolved to this list at load (pipeline/spec/selectors.py)",
        json_schema_extra=_selector_in_json_schema,
    )


SEARCH_DOC = (
    "a grid over params ({key: [values]}, at most 24 points) or `default` (the family's default_search in "
    "conf/model/<family>.yaml); every point is cross-validated on the selection folds and the best competes "
    "(docs/adr/0032-parameter-search.md)"
)


def _default_in_json_schema(schema: dict[str, Any]) -> None:
    """A spec FILE may say `search: default` (replaced by the group's grid at load): editors accept it too."""
    schema.setdefault("anyOf", []).insert(0, {"type": "string", "const": "default"})


def _unresolved_default(value: Any) -> Any:
    """`search: default` is replaced by the group's grid at load; left here it had no grid to take."""
    if value == "default":
        raise ValueError("search: default takes conf/model/<family>.yaml's default_search, and there is none")
    return value


class LightGBMModel(ModelBase):
    family: Literal["lightgbm"]
    params: LightGBMParams = Field(default_factory=LightGBMParams)
    search: LightGBMSearch | None = Field(
        None, description=SEARCH_DOC, exclude_if=lambda v: v is None, json_schema_extra=_default_in_json_schema
    )

    _default = field_validator("search", mode="before")(_unresolved_default)


class LogisticModel(ModelBase):
    family: Literal["logistic"]
    params: LogisticParams = Field(default_factory=LogisticParams)
    search: LogisticSearch | None = Field(
        None, description=SEARCH_DOC, exclude_if=lambda v: v is None, json_schema_extra=_default_in_json_schema
    )

    _default = field_validator("search", mode="before")(_unresolved_default)


class IndexSpec(Strict):
    type: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_construction: int = Field(200, ge=1, description="HNSW build-time neighbour list size")
    hnsw_ef_search: int = Field(128, ge=1, description="HNSW search-time neighbour list size (recall vs speed)")
    ivf_nlist: int = Field(100, ge=1)
    ivf_nprobe: int = Field(10, ge=1)


class TwoTowerModel(ModelBase):
    family: Literal["two_tower"]
    params: TwoTowerParams = Field(default_factory=TwoTowerParams)
    item_features: list[Column] = Field(default_factory=list)
    index: IndexSpec = Field(default_factory=IndexSpec)
    candidates: int = Field(500, ge=1, description="candidates retrieved per request")
    positives: Literal["label", "impressions"] = Field(
        "label", description="what trains the towers: rows with a positive label, or every logged impression"
    )


ModelSpec = Annotated[LightGBMModel | LogisticModel | TwoTowerModel, Field(discriminator="family")]


class SelectionSpec(Strict):
    metric: str | None = Field(None, description="metric that picks the challenger; default auc / ndcg@10 by task")
    cv_folds: int = Field(3, ge=2, le=20)


class RankerSpec(Strict):
    family: Literal["lightgbm_ranker", "mlp_ranker"] = "lightgbm_ranker"
    features: list[Column] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)


SourceType = Literal["two_tower", "item_knn", "ease", "als", "cooccurrence", "popularity"]


class RetrievalSourceSpec(Strict):
    """One candidate source (pipeline/recsys/sources): its type, params and share of the merge."""

    type: SourceType
    name: Name | None = Field(None, description="how reports and ranker features name it; absent: the type")
    params: dict[str, Any] = Field(default_factory=dict, description="the type's params (docs/spec-reference.md)")
    weight: int = Field(1, ge=1, description="slots per round of the round-robin merge")


class RetrievalSpec(Strict):
    """Which sources propose candidates; absent: two_tower, cooccurrence, popularity at 4:1:1."""

    sources: list[RetrievalSourceSpec] = Field(min_length=1)


def _default_baselines() -> list[RetrievalSourceSpec]:
    return [RetrievalSourceSpec(type=t) for t in ("popularity", "cooccurrence", "item_knn", "ease")]


class RerankerSpec(Strict):
    diversity_attribute: Column = Field(
        description="recommendation: a declared item attribute (data.items.attributes; multi: its first value)"
    )
    diversity_weight: float = Field(0.3, ge=0, le=1)
    min_exposure_share: float = Field(0.05, ge=0, le=1)
    latency_budget_share: float = Field(0.8, gt=0, le=1, description="skip re-ranking past this share of the SLA")


# ---------------------------------------------------------------- serving (recommendation)

FallbackLevel = Literal["FULL", "STALE_FEATURES", "SIMPLE_RANKING", "POPULARITY"]
FALLBACK_ORDER: tuple[str, ...] = ("FULL", "STALE_FEATURES", "SIMPLE_RANKING", "POPULARITY")


class StageBudgets(Strict):
    """Per-stage time budgets of one /recommend request; a stage past its budget hands over to a fallback level."""

    retrieval: float = Field(60.0, gt=0, description="ms for the retrieval sources; a source still running is left out")
    features: float = Field(20.0, gt=0, description="ms for the online feature lookup (Redis); past it: STALE_FEATURES")
    ranking: float = Field(60.0, gt=0, description="ms for the ranker; past it or on error: SIMPLE_RANKING")


class ColdStartSpec(Strict):
    policy: Literal["popularity", "popular_in"] = Field(
        "popularity",
        description="list for unknown and cold users (popular_in: popularity within the user's value of `attribute`)",
    )
    min_interactions: int = Field(1, ge=0, description="users with fewer known positive interactions are cold")
    attribute: Column | None = Field(
        None,
        description="popular_in: a declared categorical item attribute; the user's value comes from the user "
        "table's column of that name, else the request's context",
    )

    @model_validator(mode="after")
    def _attribute_for_popular_in(self) -> ColdStartSpec:
        if self.policy == "popular_in" and self.attribute is None:
            raise ValueError("policy popular_in needs `attribute` (a declared categorical item attribute)")
        return self


class ServingSpec(Strict):
    """How /recommend answers: SLA, list size cap, stage budgets, fallback chain, cold-start policy."""

    sla_ms: float = Field(200.0, gt=0, description="end-to-end SLA; re-ranking skips past its latency_budget_share")
    max_k: int = Field(100, ge=1, le=10_000, description="largest k a request may ask for")
    stage_budget_ms: StageBudgets = Field(default_factory=StageBudgets)
    fallback: list[FallbackLevel] = Field(
        default_factory=lambda: list(FALLBACK_ORDER),
        description="degradation levels in order, starting at FULL; a failed stage answers at the next declared one",
    )
    cold_start: ColdStartSpec = Field(default_factory=ColdStartSpec)

    @field_validator("fallback")
    @classmethod
    def _fallback_order(cls, levels: list[str]) -> list[str]:
        if not levels or levels[0] != "FULL":
            raise ValueError("the fallback chain must start with FULL")
        ranks = [FALLBACK_ORDER.index(level) for level in levels]
        if ranks != sorted(set(ranks)):
            raise ValueError(f"fallback levels must be unique and in the order {' -> '.join(FALLBACK_ORDER)}")
        return levels


# ---------------------------------------------------------------- evaluation


class EvaluationSpec(Strict):
    threshold: float = Field(0.5, gt=0, lt=1, description="probability above which an entity is flagged")
    top_k: int = Field(100, ge=1, description="list size for precision_at_k and ranking metrics")
    group_columns: list[Column] = Field(default_factory=list)
    refit: Literal["none", "train_valid", "all"] = Field(
        "none",
        description="retrain the chosen model on these parts after the gates, before registering; none: register "
        "the model the gates measured (docs/adr/0020-refit.md)",
    )
    min_users: int = Field(
        100, ge=1, description="recommendation: fewer evaluated users than this makes every metric gate insufficient"
    )
    baselines: list[RetrievalSourceSpec] = Field(
        default_factory=_default_baselines,
        description="recommendation: sources fitted on the same train part and scored on the same users, reported "
        "beside the system (ease is skipped above its max_items)",
    )
    min_rows: int | None = Field(
        None,
        ge=1,
        description="classification: test rows a metric gate's evidence needs (recommendation: evaluation.min_users); "
        "fewer: the gate is insufficient (its on_insufficient decides); a gate's own min_rows overrides",
    )
    min_positives: int | None = Field(
        None, ge=1, description="classification: positive rows a metric gate's evidence needs; as min_rows"
    )
    bootstrap: int = Field(
        200, ge=0, description="replicates of the test rows for every metric gate's interval (0: no intervals)"
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the metric gates' intervals")


class BaselineSpec(Strict):
    """What `vs: baseline` compares with: a statistic of the last N promoted models' metric, or, with
    `name`, a same-run baseline (recommendation: one of `evaluation.baselines`) on the same users.

    A slow slide (each model within 1-2% of the last) passes every champion gate; against the
    best (or mean) of several earlier champions it shows (docs/adr/0014-triggers-backtest-schedule.md).
    """

    name: Name | None = Field(
        None,
        description="a same-run baseline (recommendation: the name or type of an evaluation.baselines entry, e.g. "
        "ease): compare with its metric on the same users in this run; window/statistic are then unused",
    )

    window: int = Field(5, ge=1, le=100, description="the last N promoted models (newest first)")
    statistic: Literal["best", "mean", "median"] = Field(
        "median", description="best (in the metric's direction), mean or median of the window's values"
    )


class GateSpec(Strict):
    """One pass/fail rule on a metric. Without `vs`: absolute bounds; with `vs`: relative."""

    metric: str | None = Field(None, description="metric name; defaults to the gate's own name")
    min: float | None = None
    max: float | None = None
    vs: Literal["champion", "baseline"] | None = None
    max_drop: float | None = Field(None, ge=0, description="largest allowed absolute worsening vs `vs`")
    max_relative_drop: float | None = Field(None, ge=0, le=1)
    baseline: BaselineSpec = Field(
        default_factory=BaselineSpec,
        description="vs: baseline — window and statistic of the promoted history, or name: a same-run baseline",
    )
    blocking: bool = True
    on_insufficient: Literal["report", "fail"] = Field(
        "report",
        description="too little evidence (a fairness/causal metric left undefined, fewer rows/positives than "
        "min_rows/min_positives, no interval for an explicit decide_on, groups left out that would flip the "
        "verdict): report it, not blocking (report) or fail (block)",
    )
    if_not_comparable: Literal["block", "pass"] = Field(
        "block",
        description="vs: champion — when the champion cannot be re-scored on this run's test rows (other task or "
        "label, missing input columns, values its contract refuses): block (fail closed) or pass",
    )
    decide_on: Literal["point", "lower_bound", "upper_bound"] | None = Field(
        None,
        description="which number min/max is checked against: the point estimate or a bound of its interval; "
        "absent: point, except fairness gaps/disparities/equity: the cautious side (max: upper, min: lower bound)",
    )
    source: Literal["test", "cv"] = Field(
        "test", description="test: the held-out test slice; cv: the mean over the selected model's CV folds"
    )
    min_rows: int | None = Field(None, ge=1, description="rows the evidence needs; overrides evaluation.min_rows")
    min_positives: int | None = Field(
        None, ge=1, description="positives the evidence needs; overrides evaluation.min_positives"
    )


GroupSet = list[Column]


class FairnessSpec(Strict):
    """Group metrics with sample sizes and bootstrap intervals (docs/adr/0015-fairness-and-causal.md)."""

    groups: list[GroupSet] = Field(
        default_factory=list,
        description="row groups (classification) or user groups (recommendation); a list of columns is an "
        "intersection; empty: evaluation.group_columns one by one",
    )
    creator_groups: list[GroupSet] = Field(
        default_factory=list, description="recommendation: item-table columns whose groups share exposure"
    )
    min_group_size: int = Field(200, ge=1, description="rows (users) a group needs before its metrics count")
    min_group_events: int = Field(
        20, ge=1, description="positives (TPR), negatives (FPR) or flagged rows (precision) a group rate needs"
    )
    min_group_items: int = Field(20, ge=1, description="recommendation: catalogue items a creator group needs")
    exposure_reference: Literal["catalog", "relevance"] = Field(
        "catalog", description="exposure equity divides a group's exposure share by its catalogue or relevance share"
    )
    k: int = Field(10, ge=1, description="recommendation: list length for exposure and user-side metrics")
    bootstrap: int = Field(500, ge=0, description="bootstrap replicates for intervals (0: no intervals)")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class ExperimentSpec(Strict):
    """A randomized experiment in the logged table: treatment arm vs held-out arm."""

    column: Column = Field(description="column naming each row's arm")
    treatment: str = "treatment"
    holdout: str = "holdout"
    alpha: float = Field(0.05, gt=0, lt=1, description="two-sided significance level")
    power: float = Field(0.8, gt=0, lt=1, description="power for the minimum detectable effect")


class CausalSpec(Strict):
    """Effect of a treatment (a recommendation, an offer) from logged data with the policy's propensities."""

    data: SourceSpec = Field(description="the logged table: one row per unit, its treatment, outcome and propensity")
    treatment: Column = Field(description="0/1 column: treated by the logging policy")
    outcome: Column = Field(description="outcome column (0/1 or numeric)")
    propensity: Column = Field(description="the logging policy's probability of treatment for the row")
    covariates: list[Column] = Field(default_factory=list, description="outcome-model inputs for doubly robust")
    estimators: list[Literal["naive", "ipw", "snipw", "dr"]] = Field(
        default_factory=lambda: ["naive", "ipw", "snipw", "dr"]
    )
    primary: Literal["ipw", "snipw", "dr"] = Field("dr", description="the estimator reported as `ate`")
    clip: float = Field(0.01, ge=0, lt=0.5, description="propensities are clipped to [clip, 1 - clip]")
    min_group_size: int = Field(100, ge=1, description="treated and untreated rows needed for an estimate")
    bootstrap: int = Field(500, ge=0, description="bootstrap replicates for intervals (0: no intervals)")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    experiment: ExperimentSpec | None = Field(
        None, description="randomized arms (A/B); their rows are left out of the observational estimators"
    )


class MaskedChurnersSpec(Strict):
    """Entities whose change in a feature falls short of their segment's expected change.

    A segment-wide gain (a product change) can lift a subscriber's absolute values into the
    normal range, so the model does not flag them; compared with their peers they lag.
    See docs/adr/0008-masked-churners.md for what "expected change" means.
    """

    enabled: bool = True
    feature: Column = Field(description="numeric contract column or derived feature whose change is compared")
    segment: Column = Field(description="categorical contract column whose groups set the expected change")
    previous: SourceSpec = Field(description="the earlier snapshot: same contract, same entity ids")
    fraction: float = Field(0.5, ge=0, le=1, description="listed below this share of the segment's expected change")
    direction: Literal["increase", "decrease"] = Field(
        "increase", description="the feature's healthy direction; only segments moving that way list anyone"
    )
    min_segment_size: int = Field(
        20, ge=1, description="entities a segment needs in both snapshots before its median counts"
    )


# ---------------------------------------------------------------- rollout


class StageSpec(Strict):
    name: Name
    traffic: float = Field(ge=0, le=1, description="share of traffic sent to the challenger")
    duration: Duration = "1d"
    min_samples: int = Field(0, ge=0)
    checks: list[str] = Field(default_factory=list, description="metrics that must hold before advancing")
    approval: bool = False
    shadow_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="traffic-0 (shadow) stages only: share of entities whose requests the challenger scores in "
        "shadow (a sticky hash, the same entities all stage); 1.0 shadows every request",
    )


class ImmediateRollback(Strict):
    error_rate: float | None = Field(0.005, ge=0, le=1)
    p99_latency_ms: float | None = Field(60.0, gt=0)


class EvaluationRollback(Strict):
    metric: str = "ctr"
    max_relative_drop: float = Field(0.02, ge=0, le=1)
    significance: float = Field(0.05, gt=0, lt=1)
    min_rank_correlation: float | None = Field(0.70, ge=-1, le=1)
    sequential: Literal["obrien_fleming", "none"] = Field(
        "obrien_fleming",
        description="boundaries over the repeated looks of the stage evaluation (ADR 0023): obrien_fleming "
        "keeps each decision's error at `significance` however often it looks; none tests every look at it",
    )


class RollbackSpec(Strict):
    immediate: ImmediateRollback = Field(default_factory=ImmediateRollback)
    evaluation: EvaluationRollback = Field(default_factory=EvaluationRollback)
    warm_standby: bool = True


class RolloutSpec(Strict):
    name: Name
    stages: list[StageSpec] = Field(min_length=1)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    schedule: CronSchedule | None = Field(
        None,
        description="when `keel schedule`'s rollout deployment evaluates the live stage (advance, hold, roll back); "
        "absent: the deployment is registered without a schedule (run it from the UI or `keel rollout evaluate`)",
    )


# ---------------------------------------------------------------- triggers


class CronSchedule(Strict):
    """A five-field cron in a timezone. A cron that can never fire (30 February) is a spec error."""

    cron: Cron
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _fires(cls, value: str) -> str:
        from croniter import CroniterBadDateError, croniter

        try:
            croniter(value, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"cron {value!r} never fires: no date matches it (e.g. 30 February)") from None
        return value


class ScheduleTrigger(CronSchedule):
    approval: bool = Field(False, description="a scheduled model needs human approval before canary")


class DriftTrigger(Strict):
    features: list[Column] = Field(default_factory=list, description="key features; empty: all model features")
    psi_above: float = Field(0.25, gt=0)
    critical_psi: float = Field(0.50, gt=0)
    reference_window: Duration = "30d"
    approval: bool = True
    wait_for_labels: bool = Field(
        False, description="hold a drift retrain until the day's outcomes (labels) are in; critical drift does not wait"
    )


class PerformanceTrigger(Strict):
    metric: str
    floor: float | None = None
    max_relative_decline: float | None = Field(0.10, ge=0, le=1)
    baseline_window: Duration = "7d"
    approval: bool = Field(False, description="a performance-triggered model needs human approval before canary")


class TriggersSpec(Strict):
    schedule: ScheduleTrigger | None = None
    drift: DriftTrigger | None = None
    performance: PerformanceTrigger | None = None
    min_interval: Duration = Field("24h", description="dedup window between retrains; critical triggers bypass it")
    rearm: bool = Field(
        True,
        description="a drift/performance trigger that started a retrain fires again only after it dropped below "
        "its threshold (or turns critical): a lasting condition starts one retrain, not one a day",
    )
    monitor: CronSchedule | None = Field(
        None, description="when the daily monitor runs (`keel schedule`); its facts feed drift/performance triggers"
    )


# ---------------------------------------------------------------- monitoring and runtime


class MonitoringSpec(Strict):
    segment_column: Column | None = None
    psi_warning: float = Field(0.10, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    psi_critical: float = Field(0.50, gt=0)
    reference: Literal["training_profile", "window"] = Field(
        "training_profile",
        description="training_profile: the champion's training profile (else the reference data's); "
        "window: the current source's rows in the reference_window before current_window",
    )
    reference_window: Duration = Field("30d", description="reference: window — length of the rolling reference")
    current_window: Duration = Field("1d", description="reference: window — the monitored span ending at --as-of")
    current: SourceSpec | None = Field(
        None, description="the data monitored when `keel monitor` gets no --data (e.g. a synthetic day)"
    )
    features: list[Column] = Field(
        default_factory=list, description="features monitored; empty: model features and the columns they derive from"
    )
    bins: int | None = Field(None, ge=2, le=100, description="bins of a profile built here; absent: contract's bins")
    history: str | None = Field(
        None, description="metrics history directory (Parquet, one partition per date); absent: <runs_dir>/<name>/"
    )
    charts: bool = Field(True, description="write PNG charts of alerted features and of the metric history")


class DaskLocalSpec(Strict):
    """A `distributed.LocalCluster` of worker processes started for the run and stopped after it."""

    n_workers: int = Field(2, ge=1, le=256, description="worker processes")
    threads_per_worker: int = Field(1, ge=1, le=256, description="threads in each worker process")
    memory_limit: str = Field("auto", description="per worker: '4GB', '2GiB' or auto (system memory / workers)")
    profile: bool = Field(
        False,
        description="Dask's sampling profiler in each worker (the dashboard's Profile page): it walks every busy "
        "thread's stack every 10 ms on the worker's event loop, 5-7% of the wall time of CPU-bound batch work",
    )


class DaskSpec(Strict):
    """runtime.executor dask: connect to `address`, else start `local` (docs/adr/0024-dask-executor.md)."""

    address: str | None = Field(
        None, description="an existing scheduler (tcp://host:8786); absent: a LocalCluster from `local`"
    )
    local: DaskLocalSpec = Field(default_factory=DaskLocalSpec)
    sweep: Literal["jobs", "steps"] = Field(
        "jobs",
        description="a sweep (keel run -m): jobs = each job a Prefect task on the cluster (DaskTaskRunner), jobs in "
        "parallel, each run whole on one worker; steps = one job after another, each job's steps over the whole "
        "cluster (for data no single worker holds)",
    )
    cv_tasks: Literal["prefect", "dask"] = Field(
        "prefect",
        description="model selection's fits, one per configuration and fold: prefect = each a Prefect task on the "
        "cluster (DaskTaskRunner; a task run each in the UI, ~85 ms more per fit on 2 workers); dask = plain Dask "
        "tasks on the same cluster, same results (no task runs; for many fits well under a second)",
    )

    @field_validator("address")
    @classmethod
    def _scheduler_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ValueError(f"a Dask scheduler address starts with tcp:// or tls:// (got {value!r})")
        return value


class RuntimeSpec(Strict):
    runs_dir: str = Field("runs", description="where run directories go (relative to the working directory)")
    bentoml_home: str | None = Field(None, description="BentoML store; default: BENTOML_HOME or ~/bentoml")
    redis_url: str | None = None
    rollout_state: Literal["file", "redis"] = Field(
        "file",
        description="where the rollout record lives: file (beside the BentoML store, one host) or redis "
        "(runtime.redis_url, shared by every worker on every host); redis needs redis_url",
    )
    prefect_api_url: str | None = Field(
        None,
        description="a Prefect server's API (http://127.0.0.1:4200/api) that flows report to, health-checked "
        "first; PREFECT_API_URL in the environment wins; absent: an ephemeral one",
    )
    executor: Literal["local", "dask"] = Field(
        "local", description="local: this process; dask: partitions on a Dask cluster (runtime.dask)"
    )
    dask: DaskSpec = Field(default_factory=DaskSpec)

    @field_validator("redis_url", "prefect_api_url")
    @classmethod
    def _no_secret_values(cls, value: str | None) -> str | None:
        """A password never lives in a spec (nor in records or Prefect parameters): name where it lives."""
        from pipeline.spec.secrets import check_reference, has_password

        if value is not None and has_password(value):
            raise ValueError(
                "a password in a URL is not kept in a spec or an override (it would reach run records and "
                "Prefect parameters): put the URL in an environment variable and write env:NAME "
                "(e.g. env:KEEL_REDIS_URL), or store it in a Prefect Secret block and write prefect-secret:NAME"
            )
        return None if value is None else check_reference(value)

    @field_validator("rollout_state")
    @classmethod
    def _redis_needs_url(cls, value: str, info: Any) -> str:
        if value == "redis" and not info.data.get("redis_url"):
            raise ValueError("rollout_state: redis needs runtime.redis_url (e.g. redis://127.0.0.1:6379/0)")
        return value


# ---------------------------------------------------------------- the spec


class Spec(Strict):
    name: Name
    description: str = ""
    task: Literal["binary_classification", "recommendation"]
    data: DataSpec
    contract: ContractSpec
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    model: ModelSpec
    candidates: list[ModelSpec] = Field(default_factory=list, description="extra models to select among")
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    ranker: RankerSpec | None = None
    reranker: RerankerSpec | None = None
    retrieval: RetrievalSpec | None = Field(None, description="recommendation: candidate sources and merge weights")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="recommendation: /recommend behaviour")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    gates: dict[str, GateSpec] = Field(default_factory=dict)
    fairness: FairnessSpec | None = Field(None, description="group metrics and disparities (gate-able by name)")
    causal: CausalSpec | None = Field(None, description="causal effect and A/B analysis (gate-able by name)")
    masked_churners: MaskedChurnersSpec | None = None
    rollout: RolloutSpec | None = None
    triggers: TriggersSpec = Field(default_factory=TriggersSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
