"""Flow `compclip-tune`: the Optuna study of params.yaml's `tune` section (and whatever it needs first)."""

from prefect import flow

from flows.common import DEFAULT_STAGE_TIMEOUT_S, cli, run_stages

TARGETS = ["tune"]


@flow(name="compclip-tune", log_prints=True)
def tune(methods: list[str] | None = None, overrides: list[str] | None = None,
         stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S, retries: int | None = None) -> list[dict]:
    """Search the loss weights; writes reports/tune/best_params.yaml (train.use_tuned reads it)."""
    return run_stages("tune", TARGETS, methods, overrides, stage_timeout_s, retries)


if __name__ == "__main__":
    cli(tune, tune.__doc__)
