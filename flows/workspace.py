"""The DVC workspace a flow run works in: one flow run at a time, param overrides applied and undone.

DVC holds a repo lock while it runs, and overrides rewrite params.yaml: two flow runs in one workspace
would trip over both. So a flow run holds a file lock on the workspace for its whole length (a nested
flow of the same process re-enters it). Overrides are applied to params.yaml with DVC's own `-S` parser
(the one `dvc exp run -S key=value` uses), the stages run, the result is saved as a DVC experiment
(`dvc exp save`, listed by `dvc exp show`, restored with `dvc exp apply`), and params.yaml is put back,
so a scheduled run never inherits another run's overrides. A run killed before it could put params.yaml
back leaves a backup; the next flow run restores it first.
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from flows.dvc_tasks import StageFailed, run_dvc

LOCK = ".dvc/tmp/compclip-flow.lock"
BACKUP = ".dvc/tmp/params.yaml.flow-backup"
_locks: dict[Path, FileLock] = {}  # one per workspace and process: re-entrant for nested flows
_active: list["Workspace"] = []


def repo_root(start: Path | None = None) -> Path:
    """The DVC repository the flow runs in: the working directory (a deployment's pull step sets it)."""
    root = (start or Path.cwd()).resolve()
    if not (root / "dvc.yaml").is_file() or not (root / ".dvc").is_dir():
        raise StageFailed(f"{root} is not a compclip DVC repository (no dvc.yaml/.dvc); run flows from its root")
    return root


def overrides_for(root: Path, methods: list[str] | None, overrides: list[str] | None) -> list[str]:
    """`-S` strings: the overrides as given, then the methods to train as deletions of the other keys of
    `methods` (`~methods.negclip`, Hydra's syntax, which `dvc exp run -S` takes) and of their
    method_overrides, with tune.methods kept to those among them."""
    import yaml

    out = list(overrides or [])
    for o in out:
        if "=" not in o and not o.startswith("~"):
            raise StageFailed(f"override {o!r} is not KEY=VALUE or ~KEY (as `dvc exp run -S` takes them)")
    if not methods:
        return out
    p = yaml.safe_load((root / "params.yaml").read_text())
    defined = list(p.get("methods") or {})
    if unknown := [m for m in methods if m not in defined]:
        raise StageFailed(f"methods {unknown} are not keys of params.yaml `methods` {defined}")
    out += [f"~methods.{m}" for m in defined if m not in methods]
    # a method's own settings go with it (params.yaml would ignore them, with a warning, otherwise)
    out += [f"~method_overrides.{m}" for m in p.get("method_overrides") or {} if m not in methods]
    tuned = (p.get("tune") or {}).get("methods") or []
    if tuned and not any(o.startswith("tune.methods=") for o in out):
        kept = [m for m in tuned if m in methods]
        if not kept:
            raise StageFailed(f"tune.methods {tuned} are not among the methods {methods}: "
                              "add one of them, or pass tune.methods=[...] as an override")
        if kept != tuned:
            out.append(f"tune.methods=[{','.join(kept)}]")
    return out


def experiment_name(flow_name: str, flow_run_name: str | None) -> str:
    """A git-ref-safe experiment name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{flow_name}-{flow_run_name or 'local'}").strip("-")[:100]


@dataclass
class Workspace:
    root: Path
    request: tuple  # (methods, overrides) as the flow was called
    overrides: list[str]  # the -S strings applied
    nested: bool = False
    stages: list[dict] = field(default_factory=list)


def _put_back(root: Path) -> bool:
    backup = root / BACKUP
    if not backup.exists():
        return False
    shutil.copyfile(backup, root / "params.yaml")
    backup.unlink()
    return True


@contextmanager
def _held(lock: FileLock, log):
    from filelock import Timeout

    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for the workspace lock %s: another flow run holds it", lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def workspace(root: Path, methods: list[str] | None, overrides: list[str] | None, log,
              experiment: str | None = None):
    """Hold the workspace, apply overrides, yield; then save the experiment (when there were overrides) and
    put params.yaml back. Nested (a subflow of the pipeline): the outer run's lock and overrides hold."""
    request = (list(methods or []), list(overrides or []))
    if _active:
        outer = _active[-1]
        if request != outer.request:
            raise StageFailed(f"a nested flow cannot change the methods or overrides of the flow run that calls "
                              f"it: {request} != {outer.request}")
        yield Workspace(root, request, outer.overrides, nested=True, stages=outer.stages)
        return
    (root / LOCK).parent.mkdir(parents=True, exist_ok=True)
    lock = _locks.setdefault(root, FileLock(str(root / LOCK)))
    with _held(lock, log):
        if _put_back(root):
            log.warning("a previous flow run ended before putting params.yaml back: restored it from %s", BACKUP)
        overrides = overrides_for(root, methods, overrides)
        ws = Workspace(root, request, overrides)
        if overrides:
            from dvc.utils.hydra import apply_overrides

            from compclip.config import load_params

            shutil.copyfile(root / "params.yaml", root / BACKUP)
            try:
                apply_overrides(root / "params.yaml", overrides)
                load_params(root / "params.yaml")  # a bad value fails here, not in the tenth stage
            except Exception as e:
                _put_back(root)
                raise StageFailed(f"overrides {overrides}: {e.__cause__ or e}") from e
            log.info("params.yaml with overrides %s", overrides)
        _active.append(ws)
        try:
            yield ws
            if overrides and experiment:
                if (root / ".git").exists():
                    run_dvc(["exp", "save", "--force", "--name", experiment], root, 600, log=log)
                    log.info("saved as DVC experiment %r (dvc exp show; dvc exp apply %s)", experiment, experiment)
                else:
                    log.warning("not a git repository: the run is not saved as a DVC experiment")
        finally:
            _active.pop()
            if _put_back(root):
                log.info("params.yaml put back as it was before the overrides")
