#!/usr/bin/env bash
# Start a process worker that runs the flow runs of one work pool (compclip-cpu, or compclip-gpu on a GPU
# machine). Stop it with Ctrl-C (SIGINT); it ignores the first SIGTERM.
# Usage: PREFECT_API_URL=http://127.0.0.1:4200/api infra/prefect-worker.sh [pool] [worker name]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL to the server, e.g. http://127.0.0.1:4200/api}"
pool="${1:-compclip-cpu}"
export PATH="$(pwd)/.venv/bin:$PATH"   # flow runs call dvc and python from the project's venv
export PREFECT_SERVER_ANALYTICS_ENABLED=false
exec prefect worker start --pool "$pool" --type process --name "${2:-$(hostname)-$pool}"
