#!/usr/bin/env bash
# Set up, then run StreamFlow churn end to end on synthetic data (no server needed):
# validate the data, then train, gate, register (local BentoML store) and batch-score.
# Extra args are Hydra overrides for both steps, e.g. scripts/demo.sh gates.auc.min=0.95
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export GX_ANALYTICS_ENABLED=false
export BENTOML_HOME="${BENTOML_HOME:-$PWD/.keel/bentoml}"
status=0
.venv/bin/keel validate specs/streamflow_churn.yaml "$@" || status=$?
if [ "$status" -eq 0 ]; then
  .venv/bin/keel run specs/streamflow_churn.yaml "$@" || status=$?
fi
run=$(ls -td runs/streamflow-churn/*/ 2>/dev/null | head -n 1)
for report in validation_report.md gate_report.md; do
  if [ -n "$run" ] && [ -f "$run/$report" ]; then echo; cat "$run/$report"; fi
done
exit "$status"
