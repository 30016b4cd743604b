"""Great Expectations suite and Data Docs (GX is slow: two tests, small samples)."""

from __future__ import annotations

import os

import pytest

from pipeline.contracts.validate import validate_frame
from tests.unit.contracts_fixtures import interactions, load_contract

os.environ["GX_ANALYTICS_ENABLED"] = "false"


@pytest.mark.slow  # importing GX alone takes ~7 s
def test_build_suite_covers_the_contract():
    from pipeline.contracts.expectations import build_suite

    suite = build_suite(load_contract("streamrec_interactions"))
    types = [e.expectation_type for e in suite.expectations]
    assert types.count("expect_column_to_exist") == 9
    assert "expect_column_values_to_be_unique" in types
    assert "expect_column_values_to_be_in_set" in types
    assert "expect_column_values_to_be_between" in types


@pytest.mark.slow
def test_data_docs_on_a_sample(tmp_path):
    from pipeline.contracts.expectations import write_data_docs

    contract = load_contract("streamrec_interactions", ge_sample_rows=300)
    clean = validate_frame(interactions(1000), contract).accepted
    res = write_data_docs(contract, clean, tmp_path / "docs")
    assert res.index_html == tmp_path / "docs" / "index.html" and res.index_html.exists()
    assert res.success, res.failed
    assert res.sample_rows == 300 and res.statistics["evaluated_expectations"] > 20
