"""Gate names such as `ndcg@10` in overrides (issue 14.6): Hydra read the `@` as a package."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "specs" / "streamrec.yaml"


def test_change_a_bound_and_remove_a_gate_named_with_at() -> None:
    gates = load_spec(SPEC, ["gates.ndcg@10.min=0.12", "~gates.hit@10"]).spec.gates
    assert gates["ndcg@10"].min == 0.12
    assert "hit@10" not in gates and "recall@500" in gates


def test_add_a_gate_named_with_at_and_values_use_hydras_grammar() -> None:
    gates = load_spec(SPEC, ["+gates.mrr@10={min: 0.05, blocking: false}"]).spec.gates
    assert gates["mrr@10"].min == 0.05 and gates["mrr@10"].blocking is False


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("~gates.nope@10", "no such key"),
        ("gates.ndcg@10.mn=3", "unknown key 'mn'"),
        ("gates.ndcg@10.min", "needs a value"),
    ],
)
def test_mistakes_are_named(override: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason):
        load_spec(SPEC, [override])


def test_group_at_package_overrides_still_go_to_hydra() -> None:
    from pipeline.spec.at_keys import is_at_key

    assert not is_at_key("model@candidates=logistic") and is_at_key("gates.hit@10.min=1")
