"""Great Expectations view of a contract: a suite plus Data Docs that agree with Keel.

GX is the human-readable report (Data Docs HTML), not the bulk validator. It validates the
same rows Keel validated (a seeded sample of `contract.ge_sample_rows` only when there are
more, labelled as such on every page) with the contract's own rules, and each rule tolerates
failures on up to `max_quarantine_fraction` of the rows, exactly as Keel's quarantine policy
does; one more expectation reads Keel's per-row verdict (`keel_row_accepted`) with the same
tolerance, so GX's pass/fail is Keel's. The pages carry Keel's verdict and counts in a
banner and render offline (pipeline/contracts/data_docs_html.py). GX is imported inside the
functions because importing it takes seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.contracts.coerce import COMPATIBLE, stored_kind
from pipeline.contracts.data_docs_html import banner, make_offline
from pipeline.contracts.result import ROW_COL, ContractResult
from pipeline.spec.schema import ContractSpec

KEEL_COLUMN = "keel_row_accepted"  # Keel's per-row verdict, added to the rows GX validates

TYPE_LISTS: dict[str, list[str]] = {
    "int": ["int64", "Int64", "int32", "Int32"],
    "float": ["float64", "Float64", "float32"],
    "bool": ["bool", "boolean"],
    "str": ["string", "str", "object", "StringDtype", "string[pyarrow]", "string[python]"],
    "datetime": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]", "datetime64"],
}


@dataclass
class DataDocsResult:
    index_html: Path
    success: bool
    statistics: dict[str, Any] = field(default_factory=dict)
    sample_rows: int = 0
    failed: list[str] = field(default_factory=list)  # "expectation_type(column)" of each failed expectation
    rows_in: int = 0  # rows Keel validated; sample_rows < rows_in means GX saw a sample
    unexpected: dict[str, int] = field(default_factory=dict)  # "expectation_type(column)" -> unexpected rows

    def summary(self) -> dict[str, Any]:
        """What a validation report keeps about the pages (the same fields locally and on Dask)."""
        return {
            "index": str(self.index_html),
            "success": self.success,
            "sample_rows": self.sample_rows,
            "rows_in": self.rows_in,
            "failed_expectations": self.failed,
        }


def _mostly(contract: ContractSpec) -> float | None:
    """Keel's tolerance: a rule may fail on up to max_quarantine_fraction of rows (none when on_violation is fail)."""
    if contract.on_violation == "fail" or contract.max_quarantine_fraction <= 0:
        return None
    return 1.0 - contract.max_quarantine_fraction


def _type_list(dtype: str, stored: Any | None) -> list[str]:
    """The dtypes Keel accepts for a contract dtype, plus the stored one when Keel finds it compatible."""
    names = list(TYPE_LISTS[dtype])
    if stored is not None and stored_kind(stored) in COMPATIBLE[dtype]:
        names += [n for n in (str(stored.dtype), type(stored.dtype).__name__) if n not in names]
    return names


def _expectations(contract: ContractSpec, frame: pd.DataFrame | None = None) -> list[Any]:
    import great_expectations.expectations as gxe

    mostly = _mostly(contract)
    tolerant = {"mostly": mostly} if mostly is not None else {}
    out: list[Any] = []
    for name, spec in contract.columns.items():
        out.append(gxe.ExpectColumnToExist(column=name))
        stored = frame[name] if frame is not None and name in frame.columns else None
        if spec.dtype in TYPE_LISTS:  # GX cannot match a CategoricalDtype with categories; in-set covers it
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=_type_list(spec.dtype, stored)))
        if not spec.nullable:  # GX map expectations skip nulls, so not-null is its own expectation
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=name, **tolerant))
        if spec.dtype in ("int", "float") and (spec.min is not None or spec.max is not None):
            out.append(
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=spec.min, max_value=spec.max, **tolerant)
            )
        if spec.allowed is not None:
            allowed = [str(a) for a in spec.allowed] if spec.dtype in ("str", "category") else list(spec.allowed)
            out.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=allowed, **tolerant))
        if spec.unique:
            notes = "GX counts every row sharing a value; Keel quarantines the repeats after the first."
            out.append(gxe.ExpectColumnValuesToBeUnique(column=name, meta={"notes": notes}, **tolerant))
    if frame is not None and KEEL_COLUMN in frame.columns:
        notes = "Keel's row verdict: a row that breaks any contract rule is quarantined, with its reasons."
        out.append(
            gxe.ExpectColumnValuesToBeInSet(column=KEEL_COLUMN, value_set=[True], meta={"notes": notes}, **tolerant)
        )
    return out


def build_suite(contract: ContractSpec, name: str | None = None, frame: pd.DataFrame | None = None) -> Any:
    """An ExpectationSuite with existence, type, not-null, between, in-set and unique expectations
    (and Keel's row verdict when `frame` carries it)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name or f"{contract.name}_suite")
    for exp in _expectations(contract, frame):
        suite.expectations.append(exp)  # add_expectation() needs a context-backed suite
    return suite


def sample_frame(df: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of at most `rows` rows (all rows when the frame is smaller)."""
    if len(df) <= rows:
        return df
    return df.sample(n=rows, random_state=seed).sort_index()


def write_data_docs(
    contract: ContractSpec,
    df: pd.DataFrame,
    out_dir: Path,
    seed: int = 0,
    result: ContractResult | None = None,
    reasons: list[str] | None = None,
    *,
    table_rows: int | None = None,
    keel_accepted: np.ndarray | None = None,
) -> DataDocsResult:
    """Validate Keel's input rows with GX in an ephemeral context; write offline Data Docs under out_dir.

    `result` is Keel's verdict on the same `df` (its row verdicts join the frame GX sees and its
    counts fill the banner); `reasons` are Keel's reasons to fail beyond the contract (e.g. drift).
    A partitioned table (the Dask executor) passes a sample of it as `df`, the table's row count as
    `table_rows` and Keel's verdict on each sampled row as `keel_accepted`: the pages then say they
    show a sample of that many rows, with Keel's counts for the whole table.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = df
    rows_in = table_rows if table_rows is not None else len(df)
    if keel_accepted is not None:
        frame = df.assign(**{KEEL_COLUMN: np.asarray(keel_accepted, dtype=bool)})
    elif result is not None and result.rows_in == len(df) and not result.schema_problems:
        accepted = np.ones(len(df), dtype=bool)
        accepted[result.quarantined[ROW_COL].to_numpy(dtype=np.int64)] = False
        frame = df.assign(**{KEEL_COLUMN: accepted})
    sample = sample_frame(frame, contract.ge_sample_rows, seed).reset_index(drop=True)
    # GX 1.24 does not recognise pandas 3's "str" dtype in type lists; as object it checks each value's type.
    strings = [c for c in sample.columns if isinstance(sample[c].dtype, pd.StringDtype)]
    sample = sample.astype(dict.fromkeys(strings, object)) if strings else sample
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm noise in flow logs
    site = "keel_site"
    ctx.add_data_docs_site(
        site_name=site,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch = (
        ctx.data_sources.add_pandas("keel")
        .add_dataframe_asset(name=contract.name)
        .add_batch_definition_whole_dataframe("all_rows" if len(sample) == rows_in else f"sample_{len(sample)}")
    )
    suite = ctx.suites.add(build_suite(contract, frame=sample))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"{contract.name}_vd", data=batch, suite=suite))
    cp = ctx.checkpoints.add(
        gx.Checkpoint(
            name=f"{contract.name}_cp", validation_definitions=[vd], actions=[UpdateDataDocsAction(name="docs")]
        )
    )
    run = cp.run(batch_parameters={"dataframe": sample})
    ctx.build_data_docs(site_names=[site])
    results = list(run.run_results.values())
    stats = dict(results[0].statistics) if results else {}
    failed, unexpected = [], {}
    for res in results:
        for r in res.results:
            label = f"{r.expectation_config.type}({r.expectation_config.kwargs.get('column')})"
            if "unexpected_count" in (r.result or {}):
                unexpected[label] = int(r.result["unexpected_count"])
            if not r.success:
                failed.append(label)
    docs = DataDocsResult(out_dir / "index.html", bool(run.success), stats, len(sample), failed, rows_in, unexpected)
    page_banner = _banner(contract, docs, result, reasons or [])
    for page in out_dir.rglob("*.html"):
        make_offline(page, page_banner, out_dir)
    return docs


def _banner(contract: ContractSpec, docs: DataDocsResult, result: ContractResult | None, reasons: list[str]) -> str:
    """Keel's verdict and counts, and what GX saw, in words for the top of every page."""
    seen = (
        f"Great Expectations validated the same {docs.rows_in:,} rows Keel validated"
        if docs.sample_rows == docs.rows_in
        else f"Great Expectations validated a seeded SAMPLE of {docs.sample_rows:,} of the {docs.rows_in:,} rows "
        f"Keel validated (contract.ge_sample_rows); its counts are the sample's"
    )
    mostly = _mostly(contract)
    rule = (
        f"each rule may fail on up to {contract.max_quarantine_fraction:.2%} of rows, Keel's quarantine budget"
        if mostly is not None
        else "no rule may fail on any row (on_violation: fail)"
    )
    if result is None:
        return banner("not given", docs.success, [f"{seen}; {rule}."])
    keel_ok = result.ok and not reasons
    lines = [
        f"{result.rows_in:,} rows in, {result.rows_accepted:,} accepted, {result.rows_quarantined:,} quarantined "
        f"({result.quarantine_fraction:.2%}); quarantined rows and their reasons: quarantine.parquet.",
        f"{seen}; {rule}. GX verdict: {'Succeeded' if docs.success else 'Failed'}.",
        *([result.policy_reason] if result.policy_reason else []),
        *reasons,
    ]
    return banner("PASSED" if keel_ok else "FAILED", keel_ok, lines)
