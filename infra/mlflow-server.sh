#!/usr/bin/env bash
# Start an MLflow tracking server on loopback, backed by the project's sqlite store.
# Usage: infra/mlflow-server.sh [port]   then: export MLFLOW_TRACKING_URI=http://127.0.0.1:${port}
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-5000}"
mkdir -p mlflow/artifacts
exec .venv/bin/mlflow server --host 127.0.0.1 --port "$port" \
  --backend-store-uri "sqlite:///$(pwd)/mlflow/mlflow.db" \
  --artifacts-destination "$(pwd)/mlflow/artifacts"
