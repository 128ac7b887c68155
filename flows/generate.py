"""Flow `compclip-generate`: sources -> ingest -> negatives -> positives -> concepts -> validate.
A failed validation fails the flow with Great Expectations' message (no retry)."""

from flows.common import cli, stage_flow

generate = stage_flow("generate", ["validate"], "Refresh the data and the generated tables, and validate them.")

if __name__ == "__main__":
    cli(generate)
