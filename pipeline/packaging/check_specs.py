"""The pre-commit hook (.pre-commit-hooks.yaml `keel-check`): `keel check` every spec under specs/.

A change to a conf/ group can break any spec that uses it, so the hook checks them all, not only the
files in the commit. Exit 2 when any spec does not compose; each problem as `keel check` prints it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cli import main as keel


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args and Path(args[0]).is_dir() else Path("specs")
    specs = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    worst = 0
    for spec in specs:
        worst = max(worst, keel(["check", str(spec)]))
    if not specs:
        print(f"no specs under {root}/")
    return worst


if __name__ == "__main__":
    sys.exit(main())
