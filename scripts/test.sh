#!/usr/bin/env bash
# Set up, then lint and run the whole test suite (slow tests included). Extra args go to pytest,
# e.g. scripts/test.sh -m "not slow" for the quick inner loop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh  # starts Redis / PostgreSQL when installed but down; says what is missing
export GX_ANALYTICS_ENABLED=false
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -n 2 --dist worksteal --timeout 600 -rs "$@"  # -rs: every skip with its reason; worksteal: an idle worker takes queued tests from the busy one (no idle tail behind a long test)
