"""The search space: params.yaml `tune.space` (dotted keys, ranges) turned into Optuna suggestions."""

from __future__ import annotations

import optuna

from compclip.config import SearchRange, tunable_field


def for_recipe(space: dict[str, SearchRange], recipe: dict[str, float]) -> dict[str, SearchRange]:
    """The keys a method's run reads: train.* and the loss sections of its own terms (tuning CLEAR GLASS's
    alpha for ce_clip would only add noise to the sampler)."""
    return {k: r for k, r in space.items()
            if k.startswith("train.") or k.split(".")[1] in recipe or len(k.split(".")) == 2}


def suggest(trial: optuna.Trial, space: dict[str, SearchRange]) -> dict[str, float | int]:
    """One value per tuned key, an int for an int param (e.g. train.warmup_steps)."""
    values = {}
    for key, r in space.items():
        if tunable_field(key) is int:
            values[key] = trial.suggest_int(key, int(r.low), int(r.high), log=r.log)
        else:
            values[key] = trial.suggest_float(key, r.low, r.high, log=r.log)
    return values


def split_values(values: dict[str, float | int]) -> tuple[dict, dict]:
    """(loss.* values, train.* values without the `train.` prefix)."""
    loss = {k: v for k, v in values.items() if k.startswith("loss.")}
    train = {k.removeprefix("train."): v for k, v in values.items() if k.startswith("train.")}
    return loss, train
