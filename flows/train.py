"""Flow `compclip-train`: pretrain -> train@<method> -> evaluate@<method> for each method -> compare.
`methods` picks the methods (as `-S methods=[...]`); the comparison table is the flow run's artifact."""

from prefect import flow

from flows.common import DEFAULT_STAGE_TIMEOUT_S, cli, run_stages

TARGETS = ["compare"]


@flow(name="compclip-train", log_prints=True)
def train(methods: list[str] | None = None, overrides: list[str] | None = None,
          stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S, retries: int | None = None) -> list[dict]:
    """Fine-tune and evaluate the methods, and compare them."""
    return run_stages("train", TARGETS, methods, overrides, stage_timeout_s, retries)


if __name__ == "__main__":
    cli(train, train.__doc__)
