"""A study worker for the tests, run as its own process (`python -m tests.tune_worker STORAGE STUDY ...`):
the real study code (storage with heartbeats, sampler, pruner, optimize loop) around a cheap objective,
so a test can kill it mid-trial or start two on one storage."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from compclip.config import SearchRange, SugarcrepeSource, TuneConfig
from compclip.tuning.study import make_storage, open_study, optimize


def config(n_trials: int) -> TuneConfig:
    return TuneConfig(out_dir=Path("unused"), space={"train.lr": SearchRange(low=0.0, high=1.0)},
                      n_trials=n_trials, max_failed_trials=5, max_steps=3, eval_every=1, pruner="none",
                      val=SugarcrepeSource(data=Path("unused"), images=Path("unused")),
                      heartbeat_interval=1, grace_period=2)


def objective(sleep: float):
    def run(trial) -> float:
        trial.set_user_attr("pid", os.getpid())
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 4):
            time.sleep(sleep)
            trial.report(x, step)
        return x
    return run


if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("storage")
    a.add_argument("study")
    a.add_argument("--n-trials", type=int, default=3)
    a.add_argument("--sleep", type=float, default=0.05)
    args = a.parse_args()
    cfg = config(args.n_trials)
    study = open_study(args.study, make_storage(args.storage, cfg.heartbeat_interval, cfg.grace_period), cfg, seed=0)
    optimize(study, objective(args.sleep), cfg.n_trials, cfg.max_failed_trials)
