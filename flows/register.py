"""Flow `compclip-register`: register every trained method in the MLflow registry and run the promotion
gate (reports/registry/decision.json, shown in the flow run's artifact)."""

from flows.common import cli, stage_flow

register = stage_flow("register", ["register"], "Register the trained models and promote the best one if it passes the gate.")

if __name__ == "__main__":
    cli(register)
