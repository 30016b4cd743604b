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
    assert "SAMPLE of 300 of the 1,000 rows" in res.index_html.read_text()
    assert res.index_html == tmp_path / "docs" / "index.html" and res.index_html.exists()
    assert res.success, res.failed
    assert res.sample_rows == 300 and res.statistics["evaluated_expectations"] > 20


def _dirty(n: int = 1000):
    import numpy as np

    df = interactions(n)
    df.loc[[3, 50, 51], "watch_minutes"] = [-1.0, 700.0, np.nan]  # below min, above max, null
    df.loc[[7, 8], "platform"] = "fax"  # not allowed
    df.loc[[9], "propensity"] = 2.0
    return df


@pytest.mark.slow
def test_data_docs_agree_with_keel_and_render_offline(tmp_path):
    """Same rows, same rules, same tolerance: GX's counts and verdict are Keel's; no CDN left in the HTML."""
    import re

    from pipeline.contracts.expectations import write_data_docs

    contract = load_contract("streamrec_interactions", ge_sample_rows=5000)
    df = _dirty()
    keel = validate_frame(df, contract)
    assert keel.ok and keel.rows_quarantined == 6
    docs = write_data_docs(contract, df, tmp_path / "docs", result=keel)
    assert docs.success == keel.ok and docs.sample_rows == docs.rows_in == keel.rows_in == 1000
    counts = keel.check_counts
    assert docs.unexpected["expect_column_values_to_be_between(watch_minutes)"] == (
        counts["watch_minutes:below_min"] + counts["watch_minutes:above_max"]
    )
    assert docs.unexpected["expect_column_values_to_not_be_null(watch_minutes)"] == counts["watch_minutes:null"] == 1
    assert docs.unexpected["expect_column_values_to_be_in_set(platform)"] == counts["platform:not_allowed"] == 2
    assert docs.unexpected["expect_column_values_to_be_between(propensity)"] == counts["propensity:above_max"] == 1
    assert docs.unexpected["expect_column_values_to_be_in_set(keel_row_accepted)"] == keel.rows_quarantined
    pages = list((tmp_path / "docs").rglob("*.html"))
    assert len(pages) >= 3
    remote = re.compile(r"<(script|link|img)\b[^>]*(src|href)=[\"']https?://", re.I)
    for page in pages:
        text = page.read_text()
        assert not remote.search(text), page
        assert "Keel verdict: PASSED" in text and "the same 1,000 rows Keel validated" in text
    index = (tmp_path / "docs" / "index.html").read_text()
    assert "validations/" in index.split("<tbody>", 1)[1]  # the run table is plain HTML, not a JS-filled shell

    # over the policy: Keel fails, and so does GX (its row-verdict expectation has Keel's tolerance)
    strict = load_contract("streamrec_interactions", ge_sample_rows=5000, max_quarantine_fraction=0.004)
    keel = validate_frame(df, strict)
    docs = write_data_docs(strict, df, tmp_path / "strict", result=keel)
    assert not keel.ok and not docs.success
    assert "Keel verdict: FAILED" in (tmp_path / "strict" / "index.html").read_text()
