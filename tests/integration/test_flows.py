"""The Prefect layer on real servers: a Prefect server on 127.0.0.1, `prefect deploy --all` of prefect.yaml, a
process worker running the pipeline deployment on tiny params in a copy of the repository; a flow run
cancelled mid-stage; a stage that fails once (DVC's repo lock held by someone else) succeeds on retry; a
failed validation fails the flow with its message and no retry."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.integration.test_dvc_repro import copy_repo, shrink
from tests.servers import prefect_env, prefect_server, prefect_worker

pytestmark = pytest.mark.slow
METHODS = ["clip", "ce_clip"]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("flows")
    repo = root / "repo"
    copy_repo(repo)
    shrink(repo / "params.yaml")
    git = ["git", "-c", "user.name=compclip", "-c", "user.email=ci@compclip"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for key, value in (("user.name", "compclip"), ("user.email", "ci@compclip")):
        subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], cwd=repo, check=True)
    with prefect_server(root / "server") as api:
        yield root, repo, api


def prefect(root: Path, api: str, *args: str, cwd: Path | None = None) -> str:
    out = subprocess.run([str(Path(sys.executable).parent / "prefect"), "--no-prompt", *args], cwd=cwd,
                         env=prefect_env(root, api), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def client(api: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class Session:
        def __enter__(self):
            self.settings = temporary_settings({PREFECT_API_URL: api})
            self.settings.__enter__()
            self.client = get_client(sync_client=True)
            return self.client.__enter__()

        def __exit__(self, *exc):
            self.client.__exit__(*exc)
            self.settings.__exit__(*exc)

    return Session()


def run_deployment(api: str, name: str, parameters: dict | None = None) -> str:
    with client(api) as c:
        dep = c.read_deployment_by_name(name)
        return str(c.create_flow_run_from_deployment(dep.id, parameters=parameters or {}).id)


def wait_state(api: str, run_id: str, states=TERMINAL, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    with client(api) as c:
        while time.monotonic() < deadline:
            state = c.read_flow_run(run_id).state
            if state and state.type.value in states:
                return state.type.value
            time.sleep(2)
    raise AssertionError(f"flow run {run_id} not in {states} after {timeout} s")


def task_runs(api: str, flow_run_ids: list[str]) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with client(api) as c:
        return c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)))


def subflow_runs(api: str, parent_id: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with client(api) as c:
        return c.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(
            any_=[parent_id])))


def dvc(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def stage_processes(repo: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if "-m stages." in cmd and p.info["cwd"] == str(repo):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_deploy_all_then_a_worker_runs_cancels_and_resumes_the_pipeline(stack):
    root, repo, api = stack
    prefect(root, api, "work-pool", "create", "compclip-cpu", "--type", "process", "--overwrite")
    prefect(root, api, "work-pool", "create", "compclip-gpu", "--type", "process", "--overwrite")
    prefect(root, api, "deploy", "--all", cwd=repo)

    # every deployment of prefect.yaml exists, with its schedule and pool
    spec = yaml.safe_load((repo / "prefect.yaml").read_text())
    flow_names = {"flows/generate.py:generate": "compclip-generate", "flows/train.py:train": "compclip-train",
                  "flows/tune.py:tune": "compclip-tune", "flows/register.py:register": "compclip-register",
                  "flows/pipeline.py:pipeline": "compclip-pipeline"}
    listing = prefect(root, api, "deployment", "ls")
    with client(api) as c:
        for d in spec["deployments"]:
            full = f"{flow_names[d['entrypoint']]}/{d['name']}"
            assert full in listing
            dep = c.read_deployment_by_name(full)
            assert dep.work_pool_name == d["work_pool"]["name"]
            crons = sorted(s.schedule.cron for s in dep.schedules)
            assert crons == sorted(s["cron"] for s in d.get("schedules", [])), full
            assert [s.active for s in dep.schedules] == [s.get("active", True) for s in d.get("schedules", [])]
            assert dep.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(repo)

    with prefect_worker(root, api, "compclip-cpu", repo) as worker_log:
        # the whole pipeline, two methods, one override: a DVC experiment; params.yaml put back afterwards
        before = (repo / "params.yaml").read_text()
        run_id = run_deployment(api, "compclip-pipeline/on-demand",
                                {"methods": METHODS, "overrides": ["evaluate.bootstrap_samples=50"]})
        assert wait_state(api, run_id) == "COMPLETED", worker_log.read_text()[-5000:]
        assert (repo / "params.yaml").read_text() == before
        subs = subflow_runs(api, run_id)
        assert {s.state.type.value for s in subs} == {"COMPLETED"} and len(subs) == 4
        tasks = task_runs(api, [str(s.id) for s in subs])
        names = {t.name for t in tasks}
        assert len(names) == len(tasks)  # a stage runs once per pipeline run, not once per subflow
        assert {"synth", "validate", "tune", "train@clip", "evaluate@ce_clip", "compare", "register"} <= names
        assert not any(n.endswith("@negclip") for n in names)  # only the methods asked for
        assert {t.state.type.value for t in tasks} == {"COMPLETED"}
        for m in METHODS:
            assert json.loads((repo / f"reports/evaluate/{m}/metrics.json").read_text())["sugarcrepe"]
        decision = json.loads((repo / "reports/registry/decision.json").read_text())
        assert set(decision["registered"]) == set(METHODS)
        assert "pipeline-" in dvc(repo, "exp", "ls")

        # MLflow runs made by the flow run carry its subflow's id; the train flow's artifact links them
        from mlflow.tracking import MlflowClient

        ml = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow/mlflow.db'}")
        exp = ml.get_experiment_by_name("compclip")
        train_flow = next(s for s in subs if flow_name(api, s.flow_id) == "compclip-train")
        runs = ml.search_runs([exp.experiment_id], f"tags.`compclip.flow_run_id` = '{train_flow.id}'")
        assert {r.info.run_name for r in runs} >= {f"train-{m}" for m in METHODS}, [r.info.run_name for r in runs]
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with client(api) as c:
            arts = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["compclip-train"])))
        assert arts and "swap_obj" in arts[0].data and runs[0].info.run_id in arts[0].data

        # a user edits params.yaml (two methods, another bootstrap): evaluate@ is stale; cancel the train
        # flow while evaluate@clip runs, then the pipeline completes and DVC is consistent
        p = yaml.safe_load((repo / "params.yaml").read_text())
        p["methods"] = {m: p["methods"][m] for m in METHODS}
        p["evaluate"]["bootstrap_samples"] = 60
        (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        run_id = run_deployment(api, "compclip-train/nightly")
        deadline = time.monotonic() + 600
        while not stage_processes(repo):
            assert time.monotonic() < deadline and wait_state(api, run_id, TERMINAL | {"RUNNING", "PENDING"},
                                                             600) not in TERMINAL, "ended before any stage ran"
            time.sleep(0.2)
        running = " ".join(stage_processes(repo)[0].cmdline())
        prefect(root, api, "flow-run", "cancel", run_id)
        assert wait_state(api, run_id, {"CANCELLED", "COMPLETED", "FAILED", "CRASHED"}) == "CANCELLED"
        deadline = time.monotonic() + 60
        while stage_processes(repo) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not stage_processes(repo), f"{running} still running after the cancel"
        assert "changed" in dvc(repo, "status")
        run_id = run_deployment(api, "compclip-pipeline/on-demand")
        assert wait_state(api, run_id) == "COMPLETED", worker_log.read_text()[-5000:]
        assert "up to date" in dvc(repo, "status").lower()


def flow_name(api: str, flow_id) -> str:
    with client(api) as c:
        return c.read_flow(flow_id).name


def latest_run(api: str, flow: str):
    """The last run of `flow` started by hand (not from a deployment, whose scheduled runs lie ahead)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.client.schemas.sorting import FlowRunSort

    with client(api) as c:
        return c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                                flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(is_null_=True)),
                                limit=1, sort=FlowRunSort.START_TIME_DESC)[0]


def test_a_transient_failure_is_retried_and_a_failed_validation_is_not(stack):
    root, repo, api = stack
    from dvc.lock import make_lock

    env = {**prefect_env(root, api), "PYTHONPATH": str(repo)}
    flow = [sys.executable, "-m", "flows.generate", "--retries", "3"]
    # someone else's `dvc` holds the repo lock for a while: the first stage fails, then succeeds on retry
    (repo / ".dvc/tmp").mkdir(exist_ok=True)
    lock = make_lock(str(repo / ".dvc/tmp/lock"), tmp_dir=str(repo / ".dvc/tmp"))
    lock.lock()
    threading.Timer(12, lock.unlock).start()
    out = subprocess.run(flow, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = latest_run(api, "compclip-generate")
    synth = next(t for t in task_runs(api, [str(run.id)]) if t.name == "synth")
    assert synth.state.type.value == "COMPLETED" and synth.run_count >= 2, synth.run_count

    # a failed validation: the flow fails with Great Expectations' message, the task ran once
    out = subprocess.run([*flow, "-S", "validate.max_words=2"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode != 0
    run = latest_run(api, "compclip-generate")
    assert run.state.type.value == "FAILED" and "validation failed" in run.state.message, run.state.message
    validate = next(t for t in task_runs(api, [str(run.id)]) if t.name == "validate")
    assert validate.state.type.value == "FAILED" and validate.run_count == 1
    assert "validate.max_words: 2" not in (repo / "params.yaml").read_text()  # put back


EPHEMERAL_FLOW = """
from prefect import flow
from flows.common import run_stages

@flow(name="compclip-hello")
def hello():
    return run_stages("hello", ["hello"], None, ["seed=7"], 120, 0)

if __name__ == "__main__":
    print(hello())
"""


def test_a_flow_runs_without_a_server_and_its_overrides_make_an_experiment(tmp_path):
    """Ephemeral mode (no PREFECT_API_URL): a one-stage DVC repository, a run with an override: the stage sees
    it, the run is saved as a DVC experiment, and params.yaml is put back."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"hello": {
        "cmd": "python -c \"import yaml; open('out.txt', 'w').write(str(yaml.safe_load(open('params.yaml'))['seed']))\"",
        "params": ["seed"], "outs": ["out.txt"]}}}))
    (repo / "hello_flow.py").write_text(EPHEMERAL_FLOW)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"], ["git", "config", "user.email", "t@t"]):
        subprocess.run(cmd, cwd=repo, check=True)
    dvc(repo, "init", "-q")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "hello"], cwd=repo, check=True)
    before = (repo / "params.yaml").read_text()
    env = {k: v for k, v in prefect_env(tmp_path).items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=f"{Path(__file__).resolve().parents[2]}", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90")
    out = subprocess.run([sys.executable, "hello_flow.py"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "'stage': 'hello', 'status': 'ran'" in out.stdout
    assert (repo / "out.txt").read_text() == "7"
    assert (repo / "params.yaml").read_text() == before
    assert "hello-" in dvc(repo, "exp", "ls")
