"""Flow `compclip-generate`: sources -> ingest -> negatives -> positives -> concepts -> validate.
A failed validation fails the flow with Great Expectations' message (no retry)."""

from prefect import flow

from flows.common import DEFAULT_STAGE_TIMEOUT_S, cli, run_stages

TARGETS = ["validate"]


@flow(name="compclip-generate", log_prints=True)
def generate(methods: list[str] | None = None, overrides: list[str] | None = None,
             stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S, retries: int | None = None) -> list[dict]:
    """Refresh the data and the generated tables, and validate them."""
    return run_stages("generate", TARGETS, methods, overrides, stage_timeout_s, retries)


if __name__ == "__main__":
    cli(generate, generate.__doc__)
