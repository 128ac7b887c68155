"""Flow `compclip-tune`: the Optuna study of params.yaml's `tune` section (and whatever it needs first)."""

from flows.common import cli, stage_flow

tune = stage_flow("tune", ["tune"], "Search the loss weights; writes reports/tune/best_params.yaml (train.use_tuned reads it).")

if __name__ == "__main__":
    cli(tune)
