"""MLflow: where runs go, how they end, and cheap per-step metrics.

The default store is sqlite under mlflow/ (no server); MLFLOW_TRACKING_URI overrides it. A run that
is interrupted (SIGTERM, Ctrl-C) ends as KILLED, a run that raises ends as FAILED: never left RUNNING.
"""

from __future__ import annotations

import os
import platform
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from compclip.config import MlflowConfig


def configure(cfg: MlflowConfig) -> str:
    """Point MLflow at the store and return the experiment id (created on first use)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    artifact_location = None
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        artifact_location = Path(cfg.artifact_root).resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        try:
            return mlflow.create_experiment(cfg.experiment, artifact_location=artifact_location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel process
            exp = mlflow.get_experiment_by_name(cfg.experiment)
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    return exp.experiment_id


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so cleanup (and the KILLED status) runs."""


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


def system_tags() -> dict[str, str]:
    tags = {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
            "cpu_count": str(os.cpu_count()), "cuda": str(torch.cuda.is_available())}
    if torch.cuda.is_available():
        tags["gpu"] = torch.cuda.get_device_name(0)
    return tags


@contextmanager
def tracked_run(experiment_id: str, run_name: str, run_id: str | None = None):
    """Start (or continue, by id) a run; end it FINISHED, KILLED or FAILED."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    # a continued run keeps its name (evaluate reopens the training run: it must not rename it)
    run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                           run_name=None if run_id else run_name,
                           log_system_metrics=True)
    try:
        mlflow.set_tags(system_tags())
        yield run
    except (Terminated, KeyboardInterrupt):
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        signal.signal(signal.SIGTERM, previous)


class MetricBuffer:
    """Per-step metrics, sent in batches: one sqlite write per `every` steps instead of per metric."""

    def __init__(self, run_id: str, every: int = 25):
        self.client, self.run_id, self.every, self.pending = MlflowClient(), run_id, every, []

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if step % self.every == 0:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.pending), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=self.pending[i:i + 1000])
        self.pending = []
