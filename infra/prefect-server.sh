#!/usr/bin/env bash
# Start a Prefect server on loopback, its database a sqlite file under prefect/ (git-ignored).
# Usage: infra/prefect-server.sh [port]   then: export PREFECT_API_URL=http://127.0.0.1:${port}/api
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-4200}"
mkdir -p prefect
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_DATABASE_CONNECTION_URL="${PREFECT_SERVER_DATABASE_CONNECTION_URL:-sqlite+aiosqlite:///$(pwd)/prefect/prefect.db}"
exec .venv/bin/prefect server start --host 127.0.0.1 --port "$port"
