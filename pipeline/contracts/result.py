"""What a contract check returns: one object a report, a gate and a writer can all read.

The invariant `rows_in == len(accepted) + len(quarantined)` holds for every result, so no
row is ever silently lost between the raw data and the two outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.spec.schema import ContractSpec

ROW_COL = "_keel_row"
REASONS_COL = "_keel_reasons"


@dataclass(frozen=True)
class SchemaProblem:
    """A dataset-level failure (missing / unexpected / wrongly typed column), named by column."""

    column: str
    problem: str  # missing_column | unexpected_column | wrong_dtype | engine_error
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"column": self.column, "problem": self.problem, "detail": self.detail}


@dataclass
class ContractResult:
    """Outcome of validating one frame against one contract."""

    contract: str
    engine: str
    rows_in: int
    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    check_counts: dict[str, int] = field(default_factory=dict)
    schema_problems: list[SchemaProblem] = field(default_factory=list)
    ok: bool = True
    policy_reason: str = ""

    @property
    def rows_accepted(self) -> int:
        return len(self.accepted)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantined)

    @property
    def quarantine_fraction(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    @property
    def per_column(self) -> dict[str, dict[str, int]]:
        """check_counts regrouped as {column: {check: count}}."""
        out: dict[str, dict[str, int]] = {}
        for key, n in self.check_counts.items():
            col, _, check = key.rpartition(":")
            out.setdefault(col, {})[check] = n
        return out

    def to_dict(self, max_examples: int = 20) -> dict[str, Any]:
        """JSON-ready summary (no frames; a few quarantined rows as examples)."""
        examples: list[dict[str, Any]] = []
        if len(self.quarantined):
            head = self.quarantined.head(max_examples)
            examples = [
                {k: (None if _isna(v) else str(v)) for k, v in rec.items()} for rec in head.to_dict(orient="records")
            ]
        return {
            "contract": self.contract,
            "engine": self.engine,
            "ok": self.ok,
            "policy_reason": self.policy_reason,
            "rows_in": self.rows_in,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_fraction": self.quarantine_fraction,
            "schema_problems": [p.to_dict() for p in self.schema_problems],
            "check_counts": dict(self.check_counts),
            "per_column": self.per_column,
            "quarantine_examples": examples,
        }


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def apply_policy(result: ContractResult, contract: ContractSpec) -> ContractResult:
    """Set ok/policy_reason: schema problems always fail; then on_violation decides."""
    reasons: list[str] = []
    if result.schema_problems:
        names = ", ".join(f"{p.column} ({p.problem})" for p in result.schema_problems)
        reasons.append(f"schema problems: {names}")
    if result.rows_accepted < contract.min_rows:
        reasons.append(f"{result.rows_accepted} accepted row(s), fewer than min_rows {contract.min_rows}")
    q = result.rows_quarantined
    if contract.on_violation == "fail" and q:
        reasons.append(f"{q} row(s) violate the contract and on_violation is 'fail'")
    elif result.quarantine_fraction > contract.max_quarantine_fraction:
        reasons.append(
            f"quarantine fraction {result.quarantine_fraction:.4f} exceeds "
            f"max_quarantine_fraction {contract.max_quarantine_fraction}"
        )
    result.ok = not reasons
    result.policy_reason = "; ".join(reasons)
    return result
