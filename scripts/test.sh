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
# -n 3 on 2 cores: many tests wait (servers starting, a cron minute, HTTP round trips), so a third worker
# fills those waits (10:16 vs 14-16 min on this 2-core box); worksteal: an idle worker takes queued tests
# from a busy one, so no worker idles behind a long test. -rs: every skip with its reason;
# --durations=20: the slowest tests, so a CI log says where the suite's time goes.
.venv/bin/python -m pytest -n 3 --dist worksteal --timeout 600 -rs --durations=20 "$@"
