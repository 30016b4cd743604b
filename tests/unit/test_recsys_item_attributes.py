"""data.items.attributes (ADR 0033): declared item columns drive features, re-ranking, cold start and fairness;
`keel check` refuses an attribute that is acted on but not declared (file:line, exit 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.recsys.attributes import Attribute, attribute_features, multi_matrix, one_value
from pipeline.spec.catalog import attribute_feature_names
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]
STREAMREC = (REPO / "specs" / "streamrec.yaml").read_text(encoding="utf-8")


def _spec(tmp_path: Path, old: str, new: str) -> Path:
    assert old in STREAMREC, old
    path = tmp_path / "streamrec.yaml"
    path.write_text(STREAMREC.replace(old, new, 1), encoding="utf-8")
    return path


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    ("old", "new", "where", "reason"),
    [
        (
            "diversity_attribute: language",
            "diversity_attribute: langage",
            "diversity_attribute: langage",
            "did you mean 'language'",
        ),
        (
            "diversity_attribute: language",
            "diversity_attribute: duration_minutes",
            "diversity_attribute:",
            "is a numeric attribute",
        ),
        (
            "attribute: language, min_interactions",
            "attribute: release_date, min_interactions",
            "cold_start:",
            "needs categorical",
        ),
        ("creator_groups: [[language]", "creator_groups: [[region]", "creator_groups:", "'region'"),
        ('metric: "exposure_equity[language]"', 'metric: "exposure_equity[lang]"', "exposure_equity[lang]", "'lang'"),
        ("      genre: categorical\n", "", "user_genre_affinity", "ranking feature 'user_genre_affinity'"),
    ],
    ids=[
        "rerank-typo",
        "rerank-numeric",
        "cold-start-timestamp",
        "creator-group",
        "equity-gate",
        "feature-of-undeclared",
    ],
)
def test_acting_on_an_undeclared_attribute_is_refused_at_its_line(
    tmp_path: Path, old: str, new: str, where: str, reason: str
) -> None:
    path = _spec(tmp_path, old, new)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    text = str(err.value)
    assert f"{path.name}:{_line(path, where)}" in text and reason in text, text
    assert main(["check", str(path)]) == 2


def test_a_multi_attribute_needs_its_delimiter(tmp_path: Path) -> None:
    path = _spec(tmp_path, "      genre: categorical\n", "      genre: multi\n")
    with pytest.raises(SpecError, match="multi attribute needs a delimiter"):
        load_spec(path)


def test_the_shipped_specs_declare_what_they_use() -> None:
    spec = load_spec(REPO / "specs" / "streamrec.yaml").spec
    assert spec.data.items is not None and spec.data.items.attributes["release_date"].type == "timestamp"
    movielens = load_spec(REPO / "examples" / "movielens" / "movielens.yaml").spec
    genres = movielens.data.items.attributes["genres"]
    assert (genres.type, genres.delimiter) == ("multi", "|") and movielens.reranker.diversity_attribute == "genres"


def test_spec_catalog_names_the_same_features_as_the_builder() -> None:
    declared = {
        "studio": Attribute("studio", "categorical"),
        "tags": Attribute("tags", "multi", ";"),
        "runtime": Attribute("runtime", "numeric"),
        "aired": Attribute("aired", "timestamp"),
    }
    types = {n: a.type for n, a in declared.items()}
    assert list(attribute_features(declared, ["studio"])) == attribute_feature_names(types, True)
    assert list(attribute_features(declared, [])) == attribute_feature_names(types, False)
    assert set(attribute_feature_names(types, True)) == {
        "item_studio", "user_studio", "same_studio", "user_studio_affinity", "user_tags_affinity", "item_runtime",
        "item_aired_age_days",
    }  # fmt: skip


def test_multi_values_split_once_and_the_first_stands_for_the_item() -> None:
    column = pd.Series(["Action|Comedy", " Drama |Action|Drama", None, ""])
    matrix, values = multi_matrix(column, "|")
    assert list(values) == ["Action", "Comedy", "Drama"]
    np.testing.assert_array_equal(matrix.toarray(), [[1, 1, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]])
    first = one_value(column, Attribute("genres", "multi", "|"))
    assert first.tolist() == ["Action", "Drama", None, None]


def test_the_report_states_the_rerankers_accuracy_cost() -> None:
    from pipeline.recsys.report import _rerank_cost

    stages = {"ranked_before_rerank": {"ndcg@10": 0.2141}, "final": {"ndcg@10": 0.2056}}
    assert _rerank_cost(stages) == ["- accuracy cost of re-ranking: NDCG@10 0.2141 without, 0.2056 with (-4.0%)"]
    assert _rerank_cost({"final": {"ndcg@10": 0.2}}) == []


def test_creator_fairness_groups_a_multi_attribute_by_its_first_value() -> None:
    from types import SimpleNamespace

    from pipeline.fairness.sections import _first_values
    from pipeline.spec.schema import AttributeSpec

    attributes = {"genres": AttributeSpec(type="multi", delimiter="|"), "studio": AttributeSpec(type="categorical")}
    spec = SimpleNamespace(data=SimpleNamespace(items=SimpleNamespace(attributes=attributes)))
    items = pd.DataFrame({"genres": ["Action|Comedy", "Comedy", None], "studio": ["a", "b", "a|b"]})
    grouped = _first_values(spec, items)
    assert grouped["genres"].tolist()[:2] == ["Action", "Comedy"]  # not "Action|Comedy" as a group of its own
    assert pd.isna(grouped["genres"].iloc[2])
    assert grouped["studio"].tolist() == ["a", "b", "a|b"]  # a categorical is left as it is
