#!/usr/bin/env bash
# Set up, then run StreamFlow churn end to end on synthetic data (no server needed):
# validate the data, then train, gate, register (local BentoML store) and batch-score.
# Ends with the gate report's top (verdict + gate table) and where every report is.
# Extra args are Hydra overrides for both steps, e.g. scripts/demo.sh gates.auc.min=0.95
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${KEEL_SKIP_SETUP:-}" ] || scripts/setup.sh  # KEEL_SKIP_SETUP=1 reuses .venv as it is
export GX_ANALYTICS_ENABLED=false
runs="${KEEL_DEMO_RUNS:-runs/streamflow-churn}"
status=0
.venv/bin/keel validate specs/streamflow_churn.yaml "$@" || status=$?
if [ "$status" -eq 0 ]; then
  .venv/bin/keel run specs/streamflow_churn.yaml "$@" || status=$?
fi
validated=$(ls -td "$runs"/*-validate-*/ 2>/dev/null | head -n 1 || true)
ran=$(ls -td "$runs"/*-run-*/ 2>/dev/null | head -n 1 || true)
fresh_run=""  # a run of this demo: newer than the latest validation
if [ -n "$ran" ] && [ -f "$ran/gate_report.md" ] && [ "$ran" -nt "$validated" ]; then fresh_run="${ran%/}"; fi
echo
if [ -n "$fresh_run" ]; then
  sed '/^---$/,$d' "$fresh_run/gate_report.md"  # the top: verdict, gate table, bundle
elif [ -n "$validated" ] && [ -f "$validated/validation_report.md" ]; then
  sed '/^## /,$d' "$validated/validation_report.md"  # why validation stopped the demo
fi
show() {  # show LABEL PATH: print the path when it exists
  if [ -n "$2" ] && [ -e "$2" ]; then printf '  %-20s %s\n' "$1" "$2"; fi
}
echo
echo "Reports:"
show "validation report" "${validated:+${validated%/}/validation_report.md}"
show "Data Docs" "${validated:+${validated%/}/data_docs/index.html}"
show "quarantined rows" "${validated:+${validated%/}/quarantine.parquet}"
if [ -n "$fresh_run" ]; then
  show "gate report" "$fresh_run/gate_report.md"
  show "run report (JSON)" "$fresh_run/run_report.json"
  show "fairness chart" "$fresh_run/fairness_causal.png"
  show "high-risk list" "$fresh_run/high_risk.csv"
  show "masked churners" "$fresh_run/masked_churners.csv"
fi
exit "$status"
