"""The MLflow model registry: every evaluated model is a version of one registered model (params
`register.model_name`) with its lineage; aliases `challenger`, `champion` and `previous-champion`; a gate
decides whether the challenger becomes champion."""
