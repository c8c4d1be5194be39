#!/usr/bin/env bash
# GPU check of the worker launcher (issue 6), for a host with one NVIDIA GPU.
# Run from anywhere: tests/gpu/check_workers_gpu.sh. Finishes in < 5 minutes;
# prints a PASS/FAIL line per check and a summary; exit status 1 on any FAIL.
#
# It needs torch with CUDA and the repository's own dependencies. It uses the
# first interpreter that has both; otherwise it makes .venv-gpu (inheriting
# the system's packages, so a preinstalled CUDA torch is reused) and pip
# installs what is missing.
set -uo pipefail
cd "$(dirname "$0")/../.."

has() { "$1" -c "$2" >/dev/null 2>&1; }
TORCH_CUDA='import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'
REPO='import grpc, sqlalchemy, psycopg, yaml, pynvml, click, rich, apscheduler, alembic'

# The repository runs from its checkout (no install needed): proto/ holds gpupool.v1.
export PYTHONPATH="$PWD:$PWD/proto${PYTHONPATH:+:$PYTHONPATH}"
DEPS="grpcio grpcio-health-checking grpcio-reflection protobuf SQLAlchemy alembic psycopg[binary]
      pgserver APScheduler rich click PyYAML nvidia-ml-py prometheus-client"
# Offline hosts: put the wheels in .gpu-wheels (pip download them elsewhere).
PIP_ARGS=""
[ -d .gpu-wheels ] && PIP_ARGS="--no-index --find-links .gpu-wheels"

PY=""
for candidate in .venv/bin/python .venv-gpu/bin/python python3; do
  if command -v "$candidate" >/dev/null && has "$candidate" "$TORCH_CUDA" && has "$candidate" "$REPO"; then
    PY=$candidate; break
  fi
done
if [ -z "$PY" ]; then
  echo "setting up .venv-gpu (system site packages + the repository)"
  [ -x .venv-gpu/bin/python ] || python3 -m venv --system-site-packages .venv-gpu
  PY=.venv-gpu/bin/python
  has "$PY" "$TORCH_CUDA" || "$PY" -m pip install -q torch || echo "WARN: could not install torch"
  # shellcheck disable=SC2086
  has "$PY" "$REPO" || "$PY" -m pip install -q $PIP_ARGS $DEPS || echo "WARN: could not install the repository's dependencies"
fi
echo "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout 280 "$PY" tests/gpu/check_workers_gpu.py
