"""Great Expectations view of a contract: a suite plus Data Docs built on a sample.

GX is the human-readable report (Data Docs HTML), not the bulk validator: it checks about
0.6M rows/s, so it only ever sees `contract.ge_sample_rows` seeded sample rows. GX is
imported inside the functions because importing it takes seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.spec.schema import ContractSpec

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


def _expectations(contract: ContractSpec) -> list[Any]:
    import great_expectations.expectations as gxe

    out: list[Any] = []
    for name, spec in contract.columns.items():
        out.append(gxe.ExpectColumnToExist(column=name))
        if spec.dtype in TYPE_LISTS:  # GX cannot match a CategoricalDtype with categories; in-set covers it
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=TYPE_LISTS[spec.dtype]))
        if not spec.nullable:  # GX map expectations skip nulls, so not-null is its own expectation
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
        if spec.dtype in ("int", "float") and (spec.min is not None or spec.max is not None):
            out.append(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=spec.min, max_value=spec.max))
        if spec.allowed is not None:
            allowed = [str(a) for a in spec.allowed] if spec.dtype in ("str", "category") else list(spec.allowed)
            out.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=allowed))
        if spec.unique:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=name))
    return out


def build_suite(contract: ContractSpec, name: str | None = None) -> Any:
    """An ExpectationSuite with existence, type, not-null, between, in-set and unique expectations."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name or f"{contract.name}_suite")
    for exp in _expectations(contract):
        suite.expectations.append(exp)  # add_expectation() needs a context-backed suite
    return suite


def sample_frame(df: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of at most `rows` rows (all rows when the frame is smaller)."""
    if len(df) <= rows:
        return df
    return df.sample(n=rows, random_state=seed).sort_index()


def write_data_docs(contract: ContractSpec, df: pd.DataFrame, out_dir: Path, seed: int = 0) -> DataDocsResult:
    """Validate a sample with GX in an ephemeral context and write Data Docs under out_dir."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = sample_frame(df, contract.ge_sample_rows, seed).reset_index(drop=True)
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
        .add_batch_definition_whole_dataframe("sample")
    )
    suite = ctx.suites.add(build_suite(contract))
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
    failed = [
        f"{r.expectation_config.type}({r.expectation_config.kwargs.get('column')})"
        for res in results
        for r in res.results
        if not r.success
    ]
    return DataDocsResult(out_dir / "index.html", bool(run.success), stats, len(sample), failed)
