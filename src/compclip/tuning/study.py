"""Studies: storage (sqlite under tune.out_dir, or any RDB URL shared by several workers), a TPE sampler
seeded from `seed`, the pruner, and the loop that runs trials until the study has its count.

A trial that raises or returns NaN ends FAIL with its reason (user attr `fail_reason`) and the study goes
on; a worker killed mid-trial stops sending heartbeats, so the next worker to start a trial marks that
trial FAIL and re-queues its values (RetryHeartbeatStaleTrialCallback): a killed study resumes where it
stopped and still finishes `tune.n_trials` COMPLETE or PRUNED trials."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from compclip.config import TuneConfig
from compclip.errors import UserError

log = logging.getLogger(__name__)
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def storage_url(cfg: TuneConfig) -> str:
    return cfg.storage or f"sqlite:///{Path(cfg.out_dir) / 'study' / 'study.db'}"


# Errors of two processes creating one storage's schema at once (optuna/optuna#4621): each checks that a table
# or row is missing, then one of them creates it first. sqlite, PostgreSQL and MySQL word them like this.
_SCHEMA_RACE = ("already exists", "unique constraint failed", "duplicate key", "duplicate entry")
_SCHEMA_ATTEMPTS = 5


def _lost_schema_race(e: sqlalchemy.exc.DBAPIError) -> bool:
    return any(s in str(e.orig).lower() for s in _SCHEMA_RACE)


def make_storage(url: str, heartbeat_interval: int, grace_period: int) -> optuna.storages.RDBStorage:
    """Workers may open a new storage at the same moment: the one that loses the race to create a table or
    the schema's version row opens it again, and then finds what the other created."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _SCHEMA_ATTEMPTS):
        try:
            return _open_storage(url, heartbeat_interval, grace_period)
        except sqlalchemy.exc.DBAPIError as e:
            if not _lost_schema_race(e):
                raise
            log.info("tune storage: another worker created its schema at the same time (%s); opening it again",
                     str(e.orig).splitlines()[0])
            time.sleep(0.1 * attempt)
    return _open_storage(url, heartbeat_interval, grace_period)


def _open_storage(url: str, heartbeat_interval: int, grace_period: int) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
        try:
            # sqlite: wait for another worker's write lock instead of failing at once
            engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                              grace_period=grace_period, heartbeat_stale_trial_callback=retry)
        except ImportError as e:
            raise UserError(f"tune storage {url.split('://')[0]}://...: no database driver ({e}); for "
                            "postgresql install psycopg2-binary") from None
        except sqlalchemy.exc.ArgumentError as e:
            raise UserError(f"tune storage {url!r}: not an SQLAlchemy database URL ({e}); e.g. "
                            "sqlite:///reports/tune/study/study.db or postgresql://user@host/db") from None


def make_pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                           n_warmup_steps=cfg.pruner_warmup_steps)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(cfg.eval_every, cfg.pruner_warmup_steps),
                                              max_resource=cfg.max_steps,
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


def study_name(method: str, identity: object) -> str:
    """Stable per (method, everything that changes what a trial computes): a changed param starts a new
    study in the same storage, an unchanged one resumes (and a larger n_trials adds trials to it)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{method}-{digest}"


def open_study(name: str, storage: optuna.storages.BaseStorage, cfg: TuneConfig, seed: int) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(cfg))
    # seeded from `seed`, offset by the trials already made: a resumed study does not redraw the same values
    startup = max(2, min(10, cfg.n_trials // 2))
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=startup)
    return study


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int,
             max_failed_trials: int) -> dict[str, int]:
    """Run trials until the study has n_trials COMPLETE or PRUNED ones (several workers may share it), or
    until max_failed_trials have failed (a UserError naming the reasons)."""

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=COUNTED))

    def failed() -> list:
        return study.get_trials(deepcopy=False, states=(TrialState.FAIL,))

    def stop_when_done(study: optuna.Study, trial) -> None:
        if finished() >= n_trials or len(failed()) >= max_failed_trials:
            study.stop()

    if finished() < n_trials and len(failed()) < max_failed_trials:
        study.optimize(objective, callbacks=[stop_when_done], catch=(Exception,), gc_after_trial=True)
    if finished() < n_trials:
        reasons = sorted({t.user_attrs.get("fail_reason", "worker died (no heartbeat)") for t in failed()})
        raise UserError(f"study {study.study_name}: {len(failed())} trials failed before {n_trials} finished "
                        f"(tune.max_failed_trials={max_failed_trials}); reasons: {reasons[:5]}")
    return counts(study)
