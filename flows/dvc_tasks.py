"""Prefect tasks that run DVC stages: one task per stage, in the order of DVC's own graph, so dvc.yaml stays
the one definition of the DAG and DVC's cache, lock and lineage keep holding.

A stage's own error (a stage prints `error: ...` and exits 1: bad input, a failed validation, a bad
param) fails the task at once with that message: running it again cannot help. Anything else (DVC's repo
lock held by someone else, a process killed for memory, a lost file system) is retried with backoff.
A stage that runs past its timeout, or whose flow run is cancelled, is stopped with SIGTERM (so MLflow
marks its run KILLED), then SIGKILL after a grace period; DVC's next run redoes it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import psutil
from prefect import get_run_logger, task
from prefect.tasks import exponential_backoff

GRACE_S = 20  # between SIGTERM and SIGKILL when a stage is stopped
STAGE_ERROR = re.compile(r"^error: ", re.M)  # how stages.run reports a UserError


class StageFailed(Exception):
    """The stage itself refused (UserError): retrying cannot help."""


class StageTimedOut(Exception):
    """The stage ran past its timeout and was stopped."""


class DvcFailed(Exception):
    """DVC or the stage failed for another reason (lock held, process killed): worth a retry."""


def dvc_executable() -> str:
    beside = Path(sys.executable).parent / "dvc"  # the venv's dvc, whatever PATH says
    return str(beside) if beside.exists() else "dvc"


def plan(targets: list[str], root: Path) -> list[str]:
    """The stages the targets need, dependencies first, as DVC's graph orders them."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        by_name = {stage.addressing: stage for stage in graph}
        unknown = [t for t in targets if t not in by_name]
        if unknown:
            raise StageFailed(f"unknown DVC stage(s) {unknown}; dvc.yaml has {sorted(by_name)}")
        order: list[str] = []
        for target in targets:
            for stage in nx.dfs_postorder_nodes(graph, by_name[target]):
                if stage.addressing not in order and stage.addressing in by_name:
                    order.append(stage.addressing)
    return order


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """DVC runs in its own process group (run_dvc): this reaches every process it started, also one started
    after the family was listed or orphaned by its parent's death."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, grace_s: float | None = None) -> None:
    """SIGTERM to DVC and the stage under it, SIGKILL to what is left after the grace period."""
    grace_s = GRACE_S if grace_s is None else grace_s
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    _signal_group(proc, signal.SIGTERM)
    for p in family:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def run_dvc(args: list[str], root: Path, timeout_s: float | None, env: dict[str, str] | None = None,
            log=None) -> str:
    """Run `dvc ARGS` in root, streaming its output to the log; return the output. Raises StageFailed,
    StageTimedOut or DvcFailed; stops the process (and its stage) on any exception, cancellation included."""
    env = {**os.environ, "TQDM_MININTERVAL": "30", **(env or {})}  # progress bars, but not one log line each
    proc = subprocess.Popen([dvc_executable(), *args], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
    lines: deque[str] = deque(maxlen=400)
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        stop(proc)

    timer = threading.Timer(timeout_s, on_timeout) if timeout_s else None
    try:
        if timer:
            timer.start()
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if log and line:
                log.info(line)
        proc.wait()
    except BaseException:  # cancellation (Prefect raises on SIGTERM), Ctrl-C: do not leave DVC running
        stop(proc)
        raise
    finally:
        if timer:
            timer.cancel()
    out = "\n".join(lines)
    if timed_out.is_set():
        raise StageTimedOut(f"dvc {' '.join(args)} ran past {timeout_s} s and was stopped")
    if proc.returncode != 0:
        if m := STAGE_ERROR.search(out):
            message = out[m.end():].split("\nERROR: failed to reproduce")[0].strip()
            raise StageFailed(message)
        raise DvcFailed(f"dvc {' '.join(args)} exited with {proc.returncode}:\n" + "\n".join(list(lines)[-30:]))
    return out


def _worth_retrying(task, task_run, state) -> bool:
    try:
        state.result()
    except (StageFailed, StageTimedOut):
        return False
    except Exception:
        return True
    return True


@task(name="dvc-stage", task_run_name="{stage}", retries=2, retry_delay_seconds=exponential_backoff(10),
      retry_jitter_factor=0.5, retry_condition_fn=_worth_retrying, log_prints=True)
def repro_stage(stage: str, root: str, timeout_s: float | None = None, env: dict[str, str] | None = None) -> dict:
    """`dvc repro --single-item STAGE`: the flow runs stages in plan order, so its dependencies are done."""
    log = get_run_logger()
    out = run_dvc(["repro", "--single-item", stage], Path(root), timeout_s, env, log)
    ran = f"Running stage '{stage}'" in out
    cached = f"Stage '{stage}' is cached" in out
    return {"stage": stage, "status": "ran" if ran else "restored from run cache" if cached else "up to date"}
