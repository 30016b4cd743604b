"""The `keel` console script: a flow verb goes to the project's warm runner when one serves it."""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    from pipeline.warm.client import delegate

    code = delegate(argv)
    if code is not None:
        return code
    from pipeline.cli import main as cold_main

    return cold_main(argv)


if __name__ == "__main__":
    sys.exit(main())
