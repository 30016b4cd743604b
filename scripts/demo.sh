#!/usr/bin/env bash
# Set up, then run the StreamFlow demo on synthetic data (no server needed) and show the report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export GX_ANALYTICS_ENABLED=false
status=0
.venv/bin/keel validate specs/streamflow_churn.yaml "$@" || status=$?
report=$(ls -td runs/streamflow-churn/*/ 2>/dev/null | head -n 1)
if [ -n "$report" ] && [ -f "$report/validation_report.md" ]; then
  echo
  cat "$report/validation_report.md"
fi
exit "$status"
