"""The parts of the Prefect flows that need no server: the stage plan read from dvc.yaml, the methods and
overrides a run applies, params.yaml put back (also after a crash), and how a failed `dvc` is classified
(a stage's own error is final, anything else is worth a retry, a timeout stops the process)."""

import logging
import shutil
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from flows import dvc_tasks
from flows.dvc_tasks import DvcFailed, StageFailed, StageTimedOut, plan, run_dvc
from flows.workspace import BACKUP, experiment_name, overrides_for, workspace
from tests.conftest import REPO

log = logging.getLogger("test")


def test_plan_follows_dvc_graph():
    gen = plan(["validate"], REPO)
    assert gen == ["synth", "ingest", "negatives", "positives", "concepts", "validate"] or \
        (set(gen) == {"synth", "ingest", "negatives", "positives", "concepts", "validate"} and gen[-1] == "validate"
         and gen.index("synth") < gen.index("ingest") < gen.index("negatives") < gen.index("positives"))
    full = plan(["register"], REPO)
    methods = list(yaml.safe_load((REPO / "params.yaml").read_text())["methods"])
    assert {f"train@{m}" for m in methods} | {f"evaluate@{m}" for m in methods} <= set(full)
    for m in methods:  # every stage after what it depends on
        assert full.index("pretrain") < full.index(f"train@{m}") < full.index(f"evaluate@{m}") < full.index("compare")
    assert full.index("tune") < full.index("train@clip") and full[-1] == "register"
    with pytest.raises(StageFailed, match="unknown DVC stage"):
        plan(["nope"], REPO)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / ".dvc").mkdir()
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_methods_become_deletions_and_narrow_tune(repo):
    defined = list(yaml.safe_load((repo / "params.yaml").read_text())["methods"])
    out = overrides_for(repo, ["clip", "ce_clip"], ["train.max_steps=7"])
    assert out[0] == "train.max_steps=7"
    own = yaml.safe_load((repo / "params.yaml").read_text()).get("method_overrides") or {}
    assert sorted(o for o in out if o.startswith("~")) == sorted(
        [f"~methods.{m}" for m in defined if m not in ("clip", "ce_clip")] +
        [f"~method_overrides.{m}" for m in own if m not in ("clip", "ce_clip")])
    assert not any(o.startswith("tune.methods") for o in out)  # tune.methods [ce_clip] is among them
    with pytest.raises(StageFailed, match="tune.methods"):
        overrides_for(repo, ["clip", "negclip"], [])
    assert "tune.methods=[negclip]" not in overrides_for(repo, ["clip", "negclip"], ["tune.methods=[negclip]"])[1:]
    with pytest.raises(StageFailed, match="not keys of params.yaml"):
        overrides_for(repo, ["clip", "typo"], [])
    with pytest.raises(StageFailed, match="KEY=VALUE"):
        overrides_for(repo, None, ["train.max_steps"])
    assert experiment_name("train", "brave owl/42") == "train-brave-owl-42"


def test_overrides_are_applied_then_put_back_even_after_a_crash(repo):
    before = (repo / "params.yaml").read_text()
    with workspace(repo, ["clip", "ce_clip"], ["train.max_steps=7"], log) as ws:
        p = yaml.safe_load((repo / "params.yaml").read_text())
        assert p["train"]["max_steps"] == 7 and set(p["methods"]) == {"clip", "ce_clip"}
        assert ws.overrides and not ws.nested
        with workspace(repo, ["clip", "ce_clip"], ["train.max_steps=7"], log) as inner:  # a subflow
            assert inner.nested and inner.overrides == ws.overrides
        with pytest.raises(StageFailed, match="nested flow cannot change"):
            with workspace(repo, None, ["train.max_steps=8"], log):
                pass
    assert (repo / "params.yaml").read_text() == before and not (repo / BACKUP).exists()

    # a bad value is refused before any stage runs, and params.yaml is untouched
    with pytest.raises(StageFailed, match="train.lr"):
        with workspace(repo, None, ["train.lr=-1"], log):
            pass
    assert (repo / "params.yaml").read_text() == before

    # a run killed after applying its overrides leaves the backup; the next run restores it first
    (repo / BACKUP).write_text(before)
    mangled = before.replace("\nseed: ", "\nseed: 1")
    assert mangled != before
    (repo / "params.yaml").write_text(mangled)
    with workspace(repo, None, None, log):
        assert (repo / "params.yaml").read_text() == before
    assert not (repo / BACKUP).exists()


def fake_dvc(tmp_path: Path, body: str) -> str:
    script = tmp_path / "dvc"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


def test_a_stage_error_is_final_with_its_message(tmp_path, monkeypatch):
    monkeypatch.setattr(dvc_tasks, "dvc_executable", lambda: fake_dvc(tmp_path, """
        import sys
        print("Running stage 'validate':")
        print("error: validation failed:\\n  captions: 3 rows longer than 2 words", file=sys.stderr)
        print("ERROR: failed to reproduce 'validate': failed to run: python -m stages.validate, exited with 1")
        sys.exit(1)
    """))
    with pytest.raises(StageFailed) as e:
        run_dvc(["repro", "validate"], tmp_path, 60)
    assert str(e.value) == "validation failed:\n  captions: 3 rows longer than 2 words"


def test_other_failures_are_worth_a_retry(tmp_path, monkeypatch):
    monkeypatch.setattr(dvc_tasks, "dvc_executable", lambda: fake_dvc(tmp_path, """
        import sys
        print("ERROR: Unable to acquire lock. Most likely another DVC process is running")
        sys.exit(1)
    """))
    with pytest.raises(DvcFailed, match="Unable to acquire lock"):
        run_dvc(["repro", "synth"], tmp_path, 60)

    class State:
        def __init__(self, exc):
            self.exc = exc

        def result(self):
            raise self.exc

    assert dvc_tasks._worth_retrying(None, None, State(DvcFailed("lock")))
    assert not dvc_tasks._worth_retrying(None, None, State(StageFailed("validation failed")))
    assert not dvc_tasks._worth_retrying(None, None, State(StageTimedOut("slow")))


def test_a_timeout_stops_dvc_and_its_stage(tmp_path, monkeypatch):
    pid_file = tmp_path / "child.pid"
    monkeypatch.setattr(dvc_tasks, "dvc_executable", lambda: fake_dvc(tmp_path, f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("Running stage 'train@clip':", flush=True)
        time.sleep(600)
    """))
    monkeypatch.setattr(dvc_tasks, "GRACE_S", 2)
    t = time.monotonic()
    with pytest.raises(StageTimedOut):
        run_dvc(["repro", "train@clip"], tmp_path, 8)  # room for a loaded machine to start the child
    assert time.monotonic() - t < 30
    child = int(pid_file.read_text())
    # gone (or a zombie waiting for init) within moments of the signal, also on a loaded machine
    deadline = time.monotonic() + 10
    while running(child):
        assert time.monotonic() < deadline, "the stage's child outlived the stop"
        time.sleep(0.1)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_every_deployment_parameter_set_applies(repo):
    """prefect.yaml's parameters are valid flow parameters whose overrides params.yaml accepts."""
    import inspect

    from flows.generate import generate
    from flows.pipeline import pipeline
    from flows.register import register
    from flows.train import train
    from flows.tune import tune

    flows = {"flows/generate.py:generate": generate, "flows/train.py:train": train, "flows/tune.py:tune": tune,
             "flows/register.py:register": register, "flows/pipeline.py:pipeline": pipeline}
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["entrypoint"] for d in spec["deployments"]} == set(flows)
    for d in spec["deployments"]:
        params = d.get("parameters") or {}
        assert set(params) <= set(inspect.signature(flows[d["entrypoint"]].fn).parameters), d["name"]
        with workspace(repo, params.get("methods"), params.get("overrides"), log):
            pass
