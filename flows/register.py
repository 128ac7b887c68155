"""Flow `compclip-register`: register every trained method in the MLflow registry and run the promotion
gate (reports/registry/decision.json, shown in the flow run's artifact)."""

from prefect import flow

from flows.common import DEFAULT_STAGE_TIMEOUT_S, cli, run_stages

TARGETS = ["register"]


@flow(name="compclip-register", log_prints=True)
def register(methods: list[str] | None = None, overrides: list[str] | None = None,
             stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S, retries: int | None = None) -> list[dict]:
    """Register the trained models and promote the best one if it passes the gate."""
    return run_stages("register", TARGETS, methods, overrides, stage_timeout_s, retries)


if __name__ == "__main__":
    cli(register, register.__doc__)
