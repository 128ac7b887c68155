"""Flow `compclip-train`: pretrain -> train@<method> -> evaluate@<method> for each method -> compare.
`methods` picks the methods (the others are left out of the run); the comparison table is the flow run's artifact."""

from flows.common import cli, stage_flow

train = stage_flow("train", ["compare"], "Fine-tune and evaluate the methods, and compare them.")

if __name__ == "__main__":
    cli(train)
