# A Prefect process worker with compclip installed: it runs the flows of prefect.yaml in /opt/compclip.
# Build context: the repository root (docker compose sets it). GPU machines: use a CUDA base image and
# start the worker on the compclip-gpu pool instead (see infra/README.md).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/compclip
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir -e . "dvc-s3>=3.2,<4" "boto3>=1.35,<2"
COPY . .
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CMD ["prefect", "worker", "start", "--pool", "compclip-cpu", "--type", "process"]
