"""MLflow: where runs go, how they end, and cheap per-step metrics; or nothing at all.

The default store is sqlite under mlflow/ (no server); MLFLOW_TRACKING_URI overrides it. Tracking is
switched off by `mlflow.enabled: false` in params.yaml or COMPCLIP_MLFLOW=0 (a GPU machine without
MLflow): `run()` then yields a NullRun and nothing else changes.

A run that is interrupted (SIGTERM, Ctrl-C) ends as KILLED, a run that raises ends as FAILED, never left
RUNNING; buffered per-step metrics are sent before it ends, whatever the ending.
"""

from __future__ import annotations

import os
import platform
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from compclip.config import MlflowConfig

OFF_VALUES = {"0", "false", "off", "no"}
# The user's override, read once: mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI into this process's
# environment, so reading it later would send a second store's runs to the first one.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def enabled(cfg: MlflowConfig) -> bool:
    return cfg.enabled and os.environ.get("COMPCLIP_MLFLOW", "1").strip().lower() not in OFF_VALUES


def configure(cfg: MlflowConfig) -> str:
    """Point MLflow at the store and return the experiment id (created on first use).

    A new sqlite store is created (schema migrations) under a file lock: two processes creating it at
    once otherwise collide in alembic and can leave it broken."""
    import mlflow
    from filelock import FileLock

    uri = USER_TRACKING_URI or cfg.tracking_uri
    artifact_location = None
    lock = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = Path(cfg.artifact_root).resolve().as_uri()
        lock = FileLock(str(db) + ".lock")
    mlflow.set_tracking_uri(uri)
    with lock if lock is not None else _nothing():
        exp = mlflow.get_experiment_by_name(cfg.experiment)  # creates or upgrades the store
        if exp is None:
            experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=artifact_location)
        else:
            experiment_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def _nothing():
    yield


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so cleanup (and the KILLED status) runs."""


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


def system_tags() -> dict[str, str]:
    tags = {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
            "cpu_count": str(os.cpu_count()), "cuda": str(torch.cuda.is_available())}
    if torch.cuda.is_available():
        tags["gpu"] = torch.cuda.get_device_name(0)
    return {**tags, **flow_tags()}


FLOW_ENV = {"COMPCLIP_FLOW_RUN_ID": "compclip.flow_run_id", "COMPCLIP_FLOW_NAME": "compclip.flow_name"}


def flow_tags() -> dict[str, str]:
    """Set by a Prefect flow (flows/) for the stages it runs: the flow run's report links these runs."""
    return {tag: os.environ[env] for env, tag in FLOW_ENV.items() if os.environ.get(env)}


class NullRun:
    """Tracking switched off (or a non-main process): every call does nothing."""

    run_id: str | None = None
    end_status: str | None = None  # what a client_run body sets (a pruned trial: KILLED)

    def log_params(self, params: dict) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_step(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_model(self, model: torch.nn.Module, model_name: str, artifact_path: str = "model") -> None: ...
    def flush(self) -> None: ...


class Run(NullRun):
    """The active MLflow run. Per-step metrics are buffered: one store write per `every` steps."""

    def __init__(self, run_id: str, every: int = 25):
        from mlflow.tracking import MlflowClient

        self.run_id, self.client, self.every, self.pending = run_id, MlflowClient(), every, []

    def log_params(self, params: dict) -> None:
        import mlflow

        mlflow.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k.replace("@", "_at_"): float(v) for k, v in metrics.items()}, step=step)

    def log_step(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if step % self.every == 0:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.pending), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=self.pending[i:i + 1000])
        self.pending = []

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_model(self, model: torch.nn.Module, model_name: str, artifact_path: str = "model") -> None:
        """Weights as safetensors plus the open_clip model name: loading it never unpickles anything."""
        import tempfile

        import mlflow

        from compclip.models.checkpoint import save_model_folder

        with tempfile.TemporaryDirectory() as tmp:
            save_model_folder(model, model_name, Path(tmp) / artifact_path)
            mlflow.log_artifacts(str(Path(tmp) / artifact_path), artifact_path=artifact_path)


@contextmanager
def run(cfg: MlflowConfig, run_name: str, run_id: str | None = None, active: bool = True):
    """Start (or continue, by id) a run and yield a Run; a NullRun when tracking is off or not `active`
    (torchrun ranks other than 0). The run ends FINISHED, KILLED or FAILED."""
    if not active or not enabled(cfg):
        yield NullRun()
        return
    import mlflow

    experiment_id = configure(cfg)
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    # a continued run keeps its name (evaluate reopens the training run: it must not rename it)
    active_run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                                  run_name=None if run_id else run_name, log_system_metrics=True)
    status = "FINISHED"
    try:
        mlflow.set_tags(system_tags())
        tracked = Run(active_run.info.run_id)
        try:
            yield tracked
        finally:
            tracked.flush()  # whatever the ending: interrupted runs keep their per-step metrics
    except (Terminated, KeyboardInterrupt):
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        mlflow.end_run(status)
        if in_main:
            signal.signal(signal.SIGTERM, previous)


class ClientRun(NullRun):
    """A run addressed by id through the client API: no process-wide active run, so several can be open at
    once and in any thread (an Optuna study's parent run and its trials' nested runs)."""

    def __init__(self, run_id: str):
        from mlflow.tracking import MlflowClient

        self.run_id, self.client, self.end_status = run_id, MlflowClient(), None

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # log_batch takes at most 100 params
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k.replace("@", "_at_"), float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def log_step(self, metrics: dict[str, float], step: int) -> None:
        self.log_metrics(metrics, step)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)


def create_run(cfg: MlflowConfig, name: str, parent_run_id: str | None = None,
               tags: dict[str, str] | None = None) -> str | None:
    """A new RUNNING run (nested under parent_run_id when given) that stays open until a client_run with
    its id ends it; None when tracking is off."""
    if not enabled(cfg):
        return None
    from mlflow.tracking import MlflowClient

    experiment_id = configure(cfg)
    all_tags = {**system_tags(), **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return MlflowClient().create_run(experiment_id, run_name=name, tags=all_tags).info.run_id


@contextmanager
def client_run(cfg: MlflowConfig, name: str, parent_run_id: str | None = None, run_id: str | None = None,
               tags: dict[str, str] | None = None):
    """A new run (nested under parent_run_id when given), or the existing run_id, through the client API.
    It ends FINISHED, or with `end_status` if the body set one (e.g. KILLED for a pruned trial), or FAILED
    when the body raises; yields a NullRun when tracking is off."""
    if not enabled(cfg):
        yield NullRun()
        return
    if run_id is None:
        run_id = create_run(cfg, name, parent_run_id, tags)
    else:
        configure(cfg)
    tracked = ClientRun(run_id)
    status = "FINISHED"
    try:
        yield tracked
    except (Terminated, KeyboardInterrupt):
        status = "KILLED"
        raise
    except BaseException:
        status = tracked.end_status or "FAILED"
        raise
    else:
        status = tracked.end_status or status
    finally:
        tracked.client.set_terminated(run_id, status)


def register_model(run_id: str, name: str, artifact_path: str = "model"):
    """A new version of registered model `name` from the model folder a run logged (Run.log_model).
    The client API, because mlflow.register_model wants an mlflow flavour (which would pickle)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    return client.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id)
