"""The pandera engine must quarantine exactly the rows the keel engine does."""

from __future__ import annotations

import numpy as np
import pandera.pandas as pa
import pytest

from pipeline.contracts.pandera_schema import to_pandera
from pipeline.contracts.result import ROW_COL
from pipeline.contracts.validate import validate_frame
from tests.unit.contracts_fixtures import interactions, load_contract


def test_to_pandera_schema_shape():
    schema = to_pandera(load_contract("streamrec_interactions"))
    assert isinstance(schema, pa.DataFrameSchema) and schema.strict
    assert schema.columns["interaction_id"].unique
    assert not to_pandera(load_contract("streamrec_interactions", allow_extra_columns=True)).strict


def _corrupt(seed: int):
    rng = np.random.default_rng(seed)
    df = interactions(400, seed)
    df["watch_minutes"] = df["watch_minutes"].astype(float)
    rows = rng.choice(len(df), 60, replace=False)
    for k, i in enumerate(rows):
        match k % 7:
            case 0:
                df.loc[i, "watch_minutes"] = np.nan
            case 1:
                df.loc[i, "watch_minutes"] = np.inf
            case 2:
                df.loc[i, "position"] = 5000
            case 3:
                df.loc[i, "user_id"] = -1
            case 4:
                df.loc[i, "platform"] = "fax"
            case 5:
                df.loc[i, "interaction_id"] = 0
            case 6:
                df.loc[i, "clicked"] = 7
    return df


@pytest.mark.parametrize("seed", [0, 1])
def test_both_engines_quarantine_exactly_the_same_rows(seed):
    df = _corrupt(seed).assign(extra=1)
    keel = validate_frame(df, load_contract("streamrec_interactions"))
    pand = validate_frame(df, load_contract("streamrec_interactions", engine="pandera"))
    assert pand.engine == "pandera"
    for r in (keel, pand):
        assert r.rows_in == len(r.accepted) + len(r.quarantined)
    assert set(keel.quarantined[ROW_COL]) == set(pand.quarantined[ROW_COL])
    assert len(keel.quarantined) > 40
    assert keel.check_counts == pand.check_counts
    assert [p.column for p in pand.schema_problems] == ["extra"]
    assert list(keel.accepted.dtypes) == list(pand.accepted.dtypes)


def test_pandera_engine_missing_column_named():
    df = interactions().drop(columns=["clicked"])
    r = validate_frame(df, load_contract("streamrec_interactions", engine="pandera"))
    assert not r.ok and [(p.column, p.problem) for p in r.schema_problems] == [("clicked", "missing_column")]
