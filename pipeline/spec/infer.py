"""Profile a sample of a table into a proposed contract and spec roles (`keel init-spec`).

Everything here is a guess a person should review, so each guess carries the reason it was
made (`notes`), which the writer turns into YAML comments: the range the data showed and how
it was widened, why a column is the id, why a label value is the positive one. Guesses err on
the side of a contract that accepts the file it came from (`keel validate` on it quarantines
nothing) while still catching what is clearly wrong later: a value far outside the seen range,
a category never seen, a repeated id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.contracts.coerce import stored_kind
from pipeline.spec.sample import Sample
from pipeline.spec.types import COLUMN_PATTERN

MAX_CATEGORIES = 50
_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|[a-z0-9](Id|ID)$|^(rownames|index|row_?id|unnamed_?0)$", re.I)
_TIME_NAME = re.compile(r"time|date|(^|_)ts$|epoch|(^|_)(created|updated)(_|$)|_at$|^at$", re.I)
_USER_NAME = re.compile(r"^(user|customer|member|visitor|account|subscriber|client)(_?id)?$", re.I)
_ITEM_NAME = re.compile(r"^(item|product|movie|article|track|song|video|book|title|sku|content)(_?id)?$", re.I)
_POSITIVE_WORDS = ("yes", "y", "true", "t", "1", "positive", "pos")
EPOCH_UNITS = (("s", 1e8, 5e9), ("ms", 1e11, 5e12), ("us", 1e14, 5e15))


class InferError(ValueError):
    """The file cannot give the spec asked for (no such label, one class, ...); exit 2."""


@dataclass
class ColumnGuess:
    name: str
    dtype: str
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    allowed: list[Any] | None = None
    unique: bool = False
    notes: list[str] = field(default_factory=list)
    not_feature: str | None = None  # why it is left out of model.features


@dataclass
class Proposal:
    """What init-spec will write: contract columns in file order, the data roles and the features."""

    sample: Sample
    task: str
    columns: list[ColumnGuess]
    skipped: dict[str, str]  # column -> why the contract cannot name it
    label: str | None
    positive: Any = 1
    positive_why: str = ""
    rating_threshold: float | None = None
    entity_id: str | None = None
    id_why: str = ""
    timestamp: str | None = None
    timestamp_unit: str | None = None
    time_why: str = ""
    user: str | None = None
    item: str | None = None
    split: str = "stratified"
    group_column: str | None = None
    split_why: str = ""
    positive_share: float | None = None
    items_source: str | None = None  # recommendation: the item table, relative to the spec
    items_why: str = ""
    n_items: int | None = None  # recommendation: the catalogue's size, when known (it picks the retrieval sources)
    label_missing: float = 0.0  # share of rows read without a label (they are quarantined)

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.not_feature is None]


def infer(
    sample: Sample,
    label: str | None,
    positive: str | None = None,
    task: str = "binary_classification",
    user: str | None = None,
    item: str | None = None,
    timestamp: str | None = None,
) -> Proposal:
    frame = sample.frame
    for role, name in (("--label", label), ("--user", user), ("--item", item), ("--timestamp", timestamp)):
        if name is not None and name not in frame.columns:
            raise InferError(f"{role} {name!r} is not a column of the file (columns: {', '.join(map(str, frame))})")
        if name is not None and not COLUMN_PATTERN.match(str(name)):
            raise InferError(f"{role} {name!r} cannot be named in a spec (letters, digits and _ only): rename it")
    if task == "binary_classification" and label is None:
        raise InferError("a binary_classification spec needs --label COL")
    skipped = {
        str(c): "not a spec identifier (letters, digits and _ only)" for c in frame if not COLUMN_PATTERN.match(str(c))
    }
    columns = [profile_column(frame[c], str(c), sample) for c in frame if str(c) not in skipped]
    proposal = Proposal(sample, task, columns, skipped, label)
    by_name = {c.name: c for c in columns}
    _pick_timestamp(proposal, by_name, timestamp)
    if task == "recommendation":
        _pick_user_item(proposal, by_name, user, item)
    _pick_id(proposal, by_name)
    if label is not None:
        _pick_positive(proposal, by_name[label], frame[label], positive)
    _pick_split(proposal, by_name)
    if task == "binary_classification" and not proposal.features:
        left = [f"{c.name}: {c.not_feature}" for c in columns if c.not_feature != "the label"]
        left += [f"not nameable (letters, digits and _ only): {', '.join(skipped)}"] if skipped else []
        raise InferError(f"no column can be a feature ({'; '.join(left)}): rename or add columns")
    return proposal


# ---------------------------------------------------------------- one column


def profile_column(series: pd.Series, name: str, sample: Sample) -> ColumnGuess:
    """dtype, nullability, a widened range or the allowed values of one column."""
    stats = sample.stats.get(name)
    present = series.dropna()
    nulls = stats.nulls if stats is not None and stats.nulls is not None else int(series.isna().sum())
    whole = stats is not None and stats.nulls is not None and sample.total_rows is not None
    guess = ColumnGuess(name, _dtype(series, present))
    if nulls:
        guess.nullable = True
        rows = sample.total_rows if whole else len(series)
        share = nulls / max(rows, 1)
        shown = f"{share:.1%}" if share >= 0.001 else "under 0.1%"
        guess.notes.append(f"{nulls:,} missing ({shown}){'' if whole else ' in the rows read'}")
    if guess.dtype in ("int", "float"):
        _numeric(guess, present, stats, sample)
    elif guess.dtype == "category":
        if isinstance(series.dtype, pd.CategoricalDtype):
            values = [_plain(v) for v in series.cat.categories]
            guess.notes.append(f"{len(values)} categories declared by the file")
        else:
            values = sorted({_plain(v) for v in present.unique()}, key=str)
            guess.notes.append(f"{len(values)} values seen: add any other the data may hold")
        guess.allowed = values
    elif guess.dtype == "str":
        guess.not_feature = f"text with {present.nunique():,} distinct values in {len(series):,} rows"
    elif guess.dtype == "datetime":
        guess.not_feature = "a time (a model takes numbers: derive one, e.g. days since)"
    if present.empty:
        guess.not_feature = "no value in the rows read"
    elif guess.not_feature is None and present.nunique() == 1:
        guess.not_feature = "one value in every row read"
    return guess


def _dtype(series: pd.Series, present: pd.Series) -> str:
    """The contract dtype to propose: the stored kind (the one the contract's coercion reads), else a guess."""
    stored = stored_kind(series)
    if stored == "category":
        categories = series.dtype.categories
        return "category" if len(categories) <= MAX_CATEGORIES * 4 and _nameable(categories) else "str"
    if stored in ("bool", "int", "float", "datetime"):
        return stored
    kind = pd.api.types.infer_dtype(present, skipna=True)
    if kind == "boolean":
        return "bool"
    if kind not in ("string", "empty"):
        return "str"
    distinct = present.nunique()
    small = distinct <= MAX_CATEGORIES and (distinct <= 0.5 * len(present) or len(present) < 20)
    return "category" if small and _nameable(present.unique()) else "str"


def _nameable(values: Any) -> bool:
    """A value Hydra would read as an interpolation (`${`) or as missing (`???`): such a column stays `str`."""
    return not any("${" in str(v) or str(v) == "???" for v in values)  # ???: OmegaConf's missing value


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _numeric(guess: ColumnGuess, present: pd.Series, stats: Any, sample: Sample) -> None:
    if stats is not None and stats.min is not None and stats.max is not None:
        lo, hi, where = float(stats.min), float(stats.max), f"all {sample.total_rows:,} rows"
    elif not present.empty:
        values = present.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return
        lo, hi = float(finite.min()), float(finite.max())
        where = "all rows" if sample.total_rows == sample.rows_read else f"the {sample.rows_read:,} rows read"
    else:
        return
    low, high = widen(lo, hi, guess.dtype == "int")
    guess.minimum, guess.maximum = low, high
    shown = f"{_num(lo)}..{_num(hi)}"
    guess.notes.insert(0, f"range in {where}: {shown}; widened to {_num(low)}..{_num(high)}")


def widen(lo: float, hi: float, integral: bool) -> tuple[float, float]:
    """A margin of half the span (never below 0 for a non-negative column), rounded outward to a round number.

    0..9 -> 0..20, 18..60 -> 0..90; a share (within 0..1) stays within 0..1.
    """
    span = hi - lo
    margin = span * 0.5 if span > 0 else max(abs(hi) * 0.5, 1.0)
    low, high = lo - margin, hi + margin
    if lo >= 0:
        low = max(low, 0.0)
    width = high - low
    step = 10.0 ** math.floor(math.log10(width)) if width > 0 else 1.0
    if integral:
        step = max(step, 1.0)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    if not integral and lo >= 0 and hi <= 1:
        high = min(high, 1.0)
    if integral:
        return float(int(low)), float(int(high))
    return round(low, 12), round(high, 12)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


# ---------------------------------------------------------------- roles


def _pick_timestamp(p: Proposal, cols: dict[str, ColumnGuess], asked: str | None) -> None:
    frame = p.sample.frame
    options = [asked] if asked else [c.name for c in p.columns if c.dtype == "datetime"]
    epoch = [c.name for c in p.columns if c.dtype == "int" and _TIME_NAME.search(c.name) and _epoch_unit(frame[c.name])]
    named = [n for n in options if _TIME_NAME.search(n)]
    choice = asked or (named or options or epoch or [None])[0]
    if choice is None:
        return
    guess = cols[choice]
    unit = _epoch_unit(frame[choice]) if guess.dtype in ("int", "float") else None
    if guess.dtype in ("int", "float") and unit is None:
        raise InferError(f"--timestamp {choice!r} holds numbers that are not epoch seconds, ms or us")
    if unit is not None:
        guess.dtype, guess.minimum, guess.maximum = "datetime", None, None
        guess.notes = [n for n in guess.notes if not n.startswith("range")] + [f"epoch {unit} since 1970"]
        p.timestamp_unit = unit
    elif guess.dtype != "datetime":
        raise InferError(f"--timestamp {choice!r} is {guess.dtype}, not a time")
    guess.not_feature = "the timestamp"
    p.timestamp = choice
    others = [n for n in options if n != choice]
    p.time_why = (
        "given with --timestamp" if asked else "the time column" + (f" (also: {', '.join(others)})" if others else "")
    )


def _epoch_unit(series: pd.Series) -> str | None:
    values = series.dropna()
    if values.empty or not pd.api.types.is_numeric_dtype(values.dtype):
        return None
    lo, hi = float(values.min()), float(values.max())
    return next((unit for unit, a, b in EPOCH_UNITS if a <= lo and hi <= b), None)


def _pick_user_item(p: Proposal, cols: dict[str, ColumnGuess], user: str | None, item: str | None) -> None:
    p.user = user or next((c.name for c in p.columns if _USER_NAME.match(c.name)), None)
    p.item = item or next((c.name for c in p.columns if _ITEM_NAME.match(c.name) and c.name != p.user), None)
    missing = [
        role for role, name in (("--user", p.user), ("--item", p.item), ("--timestamp", p.timestamp)) if not name
    ]
    if missing:
        raise InferError(
            f"cannot tell the interaction log's {', '.join(missing)} column: name it with {' '.join(missing)} COL"
        )
    for name in (p.user, p.item):
        guess = cols[name]
        guess.allowed = None  # ids are open-ended: a new user is not a contract violation
        if guess.dtype == "category":
            guess.dtype = "str"
        guess.notes = [n for n in guess.notes if not n.endswith("may hold")]
    cols[p.item].not_feature = "the item column (an item-tower input)"


def _pick_id(p: Proposal, cols: dict[str, ColumnGuess]) -> None:
    """The first id-named column with a value in every row and no value twice; other id-named ones: no features."""
    frame = p.sample.frame
    roles = {p.label, p.user, p.item, p.timestamp}
    for guess in p.columns:
        if guess.name in roles or not _ID_NAME.search(guess.name) or guess.dtype not in ("int", "str", "category"):
            continue
        column = frame[guess.name]
        if p.entity_id is None and column.notna().all() and column.is_unique and len(column) > 1:
            p.entity_id, guess.unique, guess.dtype = guess.name, True, "int" if guess.dtype == "int" else "str"
            guess.minimum = guess.maximum = guess.allowed = None
            read = "every row" if p.sample.total_rows == p.sample.rows_read else f"the {p.sample.rows_read:,} rows read"
            p.id_why = f"named like an id and unique in {read}"
            guess.notes = [f"the entity id: {p.id_why}"]
            guess.not_feature = "the entity id"
        elif guess.not_feature is None:
            guess.not_feature = "named like an id (repeats: a group, not a measurement)"
            if guess.dtype == "category":
                guess.dtype, guess.allowed, guess.notes = "str", None, []


def _pick_positive(p: Proposal, guess: ColumnGuess, series: pd.Series, asked: str | None) -> None:
    guess.not_feature = "the label"
    values = series.dropna()
    if guess.nullable:  # a row without an outcome trains nothing and would silently count as negative
        missing = len(series) - len(values)
        p.label_missing = missing / max(len(series), 1)
        guess.nullable = False
        guess.notes = [f"{missing:,} rows read have no label ({p.label_missing:.1%}): quarantined, not negatives"]
    integral = guess.dtype == "float" and bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    if integral and (p.task != "recommendation" or values.nunique() <= 2):  # 0.0/1.0: a 0/1 label stored as float
        guess.dtype, values = "int", values.astype(np.int64)
    counts = values.astype(str).value_counts()
    if p.task == "recommendation" and guess.dtype in ("int", "float") and len(counts) > 2:
        threshold = float(values.quantile(0.75))
        p.rating_threshold = threshold
        share = float((values >= threshold).mean())
        p.positive_why = (
            f"ratings {_num(values.min())}..{_num(values.max())}: >= {_num(threshold)} counts ({share:.0%})"
        )
        return
    if len(counts) < 2 and asked is None:
        raise InferError(f"the label {p.label!r} has {len(counts)} value(s) in the rows read: nothing to learn")
    if guess.dtype in ("int", "category", "str") and len(counts) <= MAX_CATEGORIES:
        if guess.dtype == "int":
            guess.allowed = sorted({int(v) for v in values})
        else:
            guess.dtype, guess.allowed = "category", guess.allowed or sorted({str(v) for v in values})
        guess.minimum = guess.maximum = None
        guess.notes = [n for n in guess.notes if not n.startswith("range") and "values seen" not in n]
    if asked is not None:
        if asked not in counts.index:
            raise InferError(
                f"--positive {asked!r} never occurs in {p.label!r} (values: {', '.join(counts.index[:12])})"
            )
        chosen, why = asked, "given with --positive"
    elif len(counts) > 2:
        raise InferError(
            f"the label {p.label!r} has {len(counts)} values ({', '.join(counts.index[:8])}, ...): "
            "name the positive one with --positive V"
        )
    else:
        named = [v for v in counts.index if v.strip().lower() in _POSITIVE_WORDS]
        if named:
            chosen, why = named[0], f"the value named {named[0]!r}"
            if counts[chosen] > counts.sum() / 2:
                why += " (the majority class: is it the outcome to find? else --positive)"
        else:
            chosen = counts.index[-1]  # value_counts sorts by count, descending: the last is the minority
            why = "the minority class"
    share = float(counts.get(chosen, 0)) / max(int(counts.sum()), 1)
    others = ", ".join(f"{v}: {n / counts.sum():.1%}" for v, n in counts.items() if v != chosen)
    p.positive_share = share
    p.positive = (
        int(chosen) if guess.dtype == "int" else (chosen.lower() == "true" if guess.dtype == "bool" else chosen)
    )
    p.positive_why = f"{why}: {share:.1%} of the rows read ({others})"


def _pick_split(p: Proposal, cols: dict[str, ColumnGuess]) -> None:
    if p.timestamp is not None and p.task == "recommendation":
        # one global cut leaves most test users of a bursty log without history (issue 14): cut per user
        p.split, p.split_why = "per_user_time", f"each user's latest interactions are test ({p.timestamp})"
        return
    if p.timestamp is not None:
        p.split, p.split_why = "time", f"train on the past, test on the future ({p.timestamp})"
        return
    if p.task == "binary_classification":
        frame = p.sample.frame
        groups = [c for c in p.columns if c.not_feature and c.not_feature.startswith("named like an id (repeats")]
        if groups:
            column = groups[0].name
            p.split, p.group_column = "group", column
            rows = frame[column].value_counts()
            p.split_why = f"{column} repeats ({int((rows > 1).sum()):,} values in several rows): none in two parts"
            return
        p.split_why = "no timestamp: each class cut at the same fractions"
