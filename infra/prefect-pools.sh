#!/usr/bin/env bash
# Create (or update) the work pools prefect.yaml's deployments use: compclip-cpu, and compclip-gpu for GPU
# machines. Both are `process` pools: a worker runs each flow run as a process in the deployment's directory.
# Usage: PREFECT_API_URL=http://127.0.0.1:4200/api infra/prefect-pools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL to the server, e.g. http://127.0.0.1:4200/api}"
for pool in compclip-cpu compclip-gpu; do
  .venv/bin/prefect --no-prompt work-pool create "$pool" --type process --overwrite
done
