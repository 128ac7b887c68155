# The MLflow server with the drivers it needs here: PostgreSQL (backend store) and S3/MinIO (artifacts).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg2-binary>=2.9,<2.10" "boto3>=1.35,<2"
