-- One PostgreSQL for the team: a database each for Prefect, MLflow and Optuna (run once, at first start).
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
