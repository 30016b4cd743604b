"""Write what `keel init-spec` proposes: a contract group file and a spec, with comments to edit.

The texts are built line by line (not yaml.dump) so each guess keeps its reason as a comment
beside it. Both files are checked with `load_spec` in a scratch copy of the layout before
anything is written, so what lands on disk passes `keel check` as it is. Files that exist are
never overwritten silently: a re-run on a newer file prints the diff and writes nothing (exit 1)
unless `--force`, because the user has likely edited what the first run wrote.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from pipeline.data.sources import PARQUET_SUFFIXES
from pipeline.spec.errors import SpecError
from pipeline.spec.infer import ColumnGuess, InferError, Proposal, infer
from pipeline.spec.sample import DEFAULT_SAMPLE_ROWS, read_sample

_SCALAR_END = re.compile(r"\n(\.\.\.\n)?$")


def scalar(value: Any) -> str:
    """One YAML flow scalar or collection, quoted where YAML would misread it ('Yes', 'on', '1.0')."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True, sort_keys=False)
    return _SCALAR_END.sub("", text)


def spec_name(text: str) -> str:
    """A file stem as a spec name: lowercase letters, digits, `-`, `.`, `_`; at most 63 characters."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:63].strip("-._")
    return name or "table"


def _column_line(c: ColumnGuess) -> str:
    body: dict[str, Any] = {"dtype": c.dtype}
    if c.minimum is not None:
        body["min"] = int(c.minimum) if c.dtype == "int" else c.minimum
        body["max"] = int(c.maximum) if c.dtype == "int" and c.maximum is not None else c.maximum
    if c.nullable:
        body["nullable"] = True
    if c.allowed is not None:
        body["allowed"] = c.allowed
    if c.unique:
        body["unique"] = True
    line = f"  {scalar(c.name)}: {scalar(body)}"
    return f"{line}  # {'; '.join(c.notes)}" if c.notes else line


def render_contract(p: Proposal, name: str, shown_source: str) -> str:
    sample = p.sample
    lines = [
        f"# Data contract for {shown_source}, written by `keel init-spec` from {sample.how}.",
        "# Ranges are what the data showed, widened; allowed values are those seen. Edit them to what the",
        "# data MAY hold: keel validate/run quarantine a row outside them (with the reason), never silently.",
        f"name: {scalar(name)}",
        "on_violation: quarantine",
    ]
    if p.label_missing:  # rows without a label are quarantined: leave room for them
        allowed = math.ceil((p.label_missing + 0.01) * 100) / 100
        why = f"{p.label_missing:.1%} of the rows have no label and are quarantined, plus 1% for bad rows"
        lines.append(f"max_quarantine_fraction: {allowed:g}   # {why}")
    else:
        lines.append("max_quarantine_fraction: 0.01   # more bad rows than this fails validate and run")
    if p.skipped:
        names = ", ".join(p.skipped)
        lines.append(f"allow_extra_columns: true   # dropped on load, a spec cannot name them: {names}")
    lines.append("columns:")
    lines += [_column_line(c) for c in p.columns]
    return "\n".join(lines) + "\n"


def render_spec(p: Proposal, name: str, contract_option: str, source: str, shown_source: str) -> str:
    lines = [
        f"# Written by `keel init-spec` from {shown_source} ({p.sample.how}). Edit freely: a re-run on a",
        "# newer file prints a diff and writes nothing unless --force.",
        "# Next: keel check THIS_FILE --data, then keel validate THIS_FILE and keel run THIS_FILE",
        "defaults:",
        f"  - contract: {contract_option}   # conf/contract/{contract_option}.yaml: one rule per column",
        f"  - model: {'two_tower' if p.task == 'recommendation' else 'lightgbm'}",
        "  - runtime: local   # keel ... runtime=dask_local: the same spec on a Dask LocalCluster",
    ]
    lines += ["  - _self_", "", f"name: {scalar(name)}", f"task: {p.task}", "", "data:"]
    lines += [f"  source: {scalar(source)}   # relative to this file", "  seed: 0   # split, CV folds and model"]
    lines += _roles(p)
    lines += [*(_recommendation(p) if p.task == "recommendation" else ["", *_classification(p)])]
    return "\n".join(lines) + "\n"


def _roles(p: Proposal) -> list[str]:
    lines = []
    if p.entity_id:
        lines.append(f"  entity_id: {scalar(p.entity_id)}   # {p.id_why}")
    else:
        lines.append("  # no entity_id: no column is named like an id and unique; rows are named by position")
    if p.timestamp:
        lines.append(f"  timestamp: {scalar(p.timestamp)}   # {p.time_why}")
        if p.timestamp_unit:
            lines.append(f"  timestamp_unit: {p.timestamp_unit}   # the column holds epoch numbers")
    if p.user:
        lines += [f"  user: {scalar(p.user)}", f"  item: {scalar(p.item)}"]
    if p.label:
        lines.append(f"  label: {scalar(p.label)}")
        if p.rating_threshold is not None:
            lines.append(f"  rating_threshold: {scalar(p.rating_threshold)}   # {p.positive_why}")
        else:
            lines.append(f"  positive: {scalar(p.positive)}   # {p.positive_why}")
    split: dict[str, Any] = {"method": p.split}
    if p.group_column:
        split["group_column"] = p.group_column
    split.update(valid_fraction=0.1, test_fraction=0.2)
    why = f"   # {p.split_why}" if p.split_why else ""
    lines.append(f"  split: {scalar(split)}{why}")
    return lines


def _classification(p: Proposal) -> list[str]:
    lines = ["model:", "  features:   # every typed column but the label, id and timestamp; `features: all` also works"]
    lines += [f"    - {scalar(c.name)}" for c in p.columns if c.not_feature is None]
    lines += [f"    # - {c.name}   # {c.not_feature}" for c in p.columns if c.not_feature not in (None, "the label")]
    share = p.positive_share or 0.5
    threshold = round(min(0.5, max(0.05, 2 * share)), 2)
    test_rows = int((p.sample.total_rows or p.sample.rows_read) * 0.2)
    top_k = max(1, min(100, test_rows // 10))
    lines += [
        "",
        f"evaluation: {scalar({'threshold': threshold, 'top_k': top_k})}   "
        f"# flag above about twice the positive rate ({share:.0%}); top_k: a tenth of the test rows, at most 100",
        "",
        "gates:",
        "  auc: {min: 0.6}   # a floor to raise once you know what good looks like",
    ]
    return lines


CLASSICAL_SOURCES = "[{type: ease}, {type: item_knn}, {type: als}, {type: popularity}]"


def _recommendation(p: Proposal) -> list[str]:
    context = [c.name for c in p.columns if c.dtype == "category" and c.not_feature is None and c.name != p.user]
    return [
        f"  items: {scalar({'source': p.items_source, 'id': p.item})}   # the catalogue: {p.items_why}",
        "",
        "model:",
        f"  features: {scalar([p.user, *context])}   # user-tower inputs: the user and the log's categories",
        f"  item_features: {scalar([p.item])}",
        *_retrieval(p, context),
        "",
        "evaluation: {top_k: 10}",
        "",
        "gates:",
        "  ndcg@10: {min: 0.01}   # a floor to raise once you know what good looks like (conf/gates/recsys.yaml)",
    ]


def _retrieval(p: Proposal, context: list[str]) -> list[str]:
    """docs/spec-reference.md, "Choosing sources": a log with nothing but (user, item, time) and a catalogue EASE
    can hold gets the classical item-item sources; one with side features keeps the built-in two-tower retrieval."""
    from pipeline.recsys.baselines import EASE_MAX_ITEMS  # here: only recommendation specs pay for scipy.linalg

    if context or p.n_items is None or p.n_items > EASE_MAX_ITEMS:
        if context:
            why = "the log has user features"
        else:
            why = "an unknown number of items" if p.n_items is None else f"{p.n_items:,} items, over EASE's limit"
        return ["", f"# retrieval: Keel's built-in (two-tower + co-occurrence + popularity): {why}"]
    return [
        "",
        f"# no user or item features and {p.n_items:,} items (EASE holds up to {EASE_MAX_ITEMS:,}): the classical",
        '# item-item sources, merged equally (docs/spec-reference.md, "Choosing sources"); no two-tower is trained',
        "retrieval:",
        f"  sources: {CLASSICAL_SOURCES}",
    ]


# ---------------------------------------------------------------- files


@dataclass
class Written:
    text: str
    payload: dict[str, Any]
    code: int


def write_proposal(
    p: Proposal, data_file: Path, out: Path, name: str, force: bool, items: pd.DataFrame | None = None
) -> Written:
    """Check the texts in a scratch layout, then write them, or print the diff against files that differ."""
    contract_option = name.replace("-", "_").replace(".", "_")
    contract_path = out.resolve().parent.parent / "conf" / "contract" / f"{contract_option}.yaml"
    source = os.path.relpath(data_file.resolve(), out.resolve().parent)
    files: dict[Path, str] = {}
    if items is not None:
        items_path = out.resolve().parent / f"{contract_option}_items.parquet"
        p.items_source = items_path.name
    files[contract_path] = render_contract(p, name, data_file.name)
    files[out.resolve()] = render_spec(p, name, contract_option, source, data_file.name)
    proposed = _check_in_scratch(files, contract_option, out.name)
    changed = {path: text for path, text in files.items() if not path.exists() or path.read_text() != text}
    existing = [path for path in changed if path.exists()]
    shown = [_shown(path) for path in files]
    payload: dict[str, Any] = {"files": shown, "rows_read": p.sample.rows_read, "total_rows": p.sample.total_rows}
    payload["proposal"] = {
        "label": p.label,
        "positive": p.positive if p.rating_threshold is None else None,
        "rating_threshold": p.rating_threshold,
        "entity_id": p.entity_id,
        "timestamp": p.timestamp,
        "split": p.split,
        "features": p.features,
        "left_out": p.skipped,
    }
    head = f"read {p.sample.how} of {data_file}"
    if p.sample.total_rows is None or p.sample.rows_read < p.sample.total_rows:
        head += " (a sample: --sample-rows N reads more)"
    if not changed:
        return Written(f"{head}\nup to date: {', '.join(shown)} already say this", {**payload, "status": "same"}, 0)
    diff = "".join(_diff(path, text) for path, text in changed.items() if path.exists())
    words = _in_words(out, proposed) if existing else ""
    diff = f"{words}\n{diff}" if words else diff
    if existing and not force:
        note = "nothing written: these files exist and differ (your edits?); review the diff, then rerun with --force"
        return Written(f"{head}\n{diff}{note}", {**payload, "status": "differs", "diff": diff}, 1)
    for path, text in changed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if items is not None:
        items.to_parquet(items_path, index=False)
    lines = [head, *(f"wrote {_shown(path)}" for path in changed), _summary(p)]
    lines.append(f"next: keel check {_shown(out.resolve())} --data")
    return Written(diff + "\n".join(lines), {**payload, "status": "written"}, 0)


def _check_in_scratch(files: dict[Path, str], contract_option: str, spec_file: str) -> dict[str, Any]:
    """load_spec on a copy of the layout (specs/X.yaml, conf/contract/X.yaml): a failure is a bug here."""
    from pipeline.spec.load import load_spec

    texts = list(files.values())
    with tempfile.TemporaryDirectory(prefix="keel-init-") as tmp:
        root = Path(tmp)
        (root / "conf" / "contract").mkdir(parents=True)
        (root / "specs").mkdir()
        (root / "conf" / "contract" / f"{contract_option}.yaml").write_text(texts[0])
        (root / "specs" / spec_file).write_text(texts[1])
        try:
            return load_spec(root / "specs" / spec_file).resolved
        except SpecError as exc:
            reasons = "; ".join(f"{pr.key}: {pr.reason}" for pr in exc.problems)
            raise InferError(
                f"the spec init-spec would write does not pass keel check ({reasons}); nothing written"
            ) from None


def _in_words(out: Path, proposed: dict[str, Any]) -> str:
    """What the newer data changes, as `keel diff` says it (empty when the spec on disk does not load)."""
    from pipeline.spec.diff import diff_specs, render
    from pipeline.spec.load import load_spec

    try:
        current = load_spec(out).resolved
    except SpecError:
        return ""
    changes = [c for c in diff_specs(current, proposed) if not c.path.startswith("data.source")]
    return f"in words (keel diff, on disk -> from the data):\n{render(changes)}\n" if changes else ""


def _diff(path: Path, text: str) -> str:
    old = path.read_text().splitlines(keepends=True)
    lines = difflib.unified_diff(
        old, text.splitlines(keepends=True), f"{_shown(path)} (on disk)", f"{_shown(path)} (from the data)"
    )
    return "".join(lines) + "\n"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _summary(p: Proposal) -> str:
    """The guesses a reviewer should look at first, in one paragraph."""
    parts = [f"{len(p.columns)} columns", f"{len(p.features)} features"]
    if p.label:
        positive = f">= {p.rating_threshold:g}" if p.rating_threshold is not None else repr(p.positive)
        parts.append(f"label {p.label} (positive {positive}: {p.positive_why})")
    parts.append(f"id {p.entity_id}" if p.entity_id else "no id column")
    parts.append(f"timestamp {p.timestamp}" if p.timestamp else "no timestamp")
    parts.append(f"split {p.split}")
    if p.skipped:
        parts.append(f"left out (not nameable): {', '.join(p.skipped)}")
    return "proposed: " + "; ".join(parts)


def init_spec(
    data_file: Path,
    label: str | None,
    *,
    positive: str | None = None,
    task: str = "binary_classification",
    out: Path | None = None,
    name: str | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    force: bool = False,
    user: str | None = None,
    item: str | None = None,
    timestamp: str | None = None,
    items_file: Path | None = None,
) -> Written:
    """`keel init-spec`: sample, infer, check, then write (or show the diff). Raises SampleError/InferError."""
    name = spec_name(name or data_file.name.split(".")[0])
    out = out or Path("specs") / f"{name.replace('-', '_').replace('.', '_')}.yaml"
    if out.suffix not in (".yaml", ".yml"):
        raise InferError(f"--out {out} must be a .yaml file")
    sample = read_sample(data_file, sample_rows)
    proposal = infer(sample, label, positive, task, user, item, timestamp)
    catalogue = None
    if task == "recommendation":
        assert proposal.item is not None
        if items_file is not None:
            proposal.items_source = os.path.relpath(items_file.resolve(), out.resolve().parent)
            proposal.items_why = "given with --items"
            proposal.n_items = _rows(items_file)
        else:
            catalogue = item_catalogue(data_file, proposal.item)
            proposal.items_why = f"the {len(catalogue):,} distinct {proposal.item} of the whole file; use your own"
            proposal.n_items = len(catalogue)
    return write_proposal(proposal, data_file, out, name, force, catalogue)


def _rows(path: Path) -> int | None:
    """Rows of a Parquet item table from its footer; None for anything else (the spec then keeps the built-in)."""
    try:
        return pq.ParquetFile(path).metadata.num_rows if path.name.lower().endswith(PARQUET_SUFFIXES) else None
    except (OSError, ValueError):
        return None


def item_catalogue(data_file: Path, item: str) -> pd.DataFrame:
    """Distinct item ids of the whole file (one column is cheap to read): the catalogue when none is given."""
    if data_file.name.lower().endswith(PARQUET_SUFFIXES):
        column = pq.read_table(data_file, columns=[item]).column(item)
    else:
        read = pa_csv.ConvertOptions(include_columns=[item])
        column = pa_csv.read_csv(data_file, convert_options=read).column(item)
    values = pc.unique(column.drop_null())
    return pd.DataFrame({item: values.to_pandas()}).sort_values(item, ignore_index=True)
