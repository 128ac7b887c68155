"""Studies across processes on a real RDB storage: a worker killed mid-trial (SIGKILL) leaves a RUNNING
trial that the next worker fails by its missing heartbeat and retries, so the study still finishes its
count; two workers share one study with no duplicate trial numbers (sqlite here, PostgreSQL when initdb is
installed)."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from compclip.tuning.study import make_storage
from tests.servers import postgres_bin, postgres_server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker(storage: str, study: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.tune_worker", storage, study, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trials(storage: str, study: str):
    # make_storage: this poll may open the storage while the worker is still creating its schema
    return optuna.load_study(study_name=study, storage=make_storage(storage, 10, 30)).get_trials(deepcopy=False)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_killed_worker_s_trial_is_failed_and_retried_and_the_study_finishes(tmp_path):
    storage, name = f"sqlite:///{tmp_path / 'study.db'}", "killed"
    proc = worker(storage, name, "--n-trials", "3", "--sleep", "0.5")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it inside its second trial
        try:
            states = [t.state for t in trials(storage, name)]
        except KeyError:  # the study is not created yet
            states = []
        if states.count(TrialState.COMPLETE) == 1 and TrialState.RUNNING in states:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the worker never reached its second trial")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = [t for t in trials(storage, name) if t.state == TrialState.RUNNING]
    assert len(killed) == 1  # left RUNNING by the dead process
    time.sleep(3)  # longer than the grace period (2 s)

    again = worker(storage, name, "--n-trials", "3", "--sleep", "0.05")
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out[-3000:]
    after = {t.number: t for t in trials(storage, name)}
    assert after[killed[0].number].state == TrialState.FAIL  # not left RUNNING
    retried = [t for t in after.values()
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed[0].number]
    assert len(retried) == 1 and retried[0].params == killed[0].params and retried[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 3


def _two_workers_share(storage: str) -> None:
    name = "shared"
    optuna.create_study(study_name=name, storage=storage, direction="maximize")  # both workers load it
    procs = [worker(storage, name, "--n-trials", "8", "--sleep", "0.05") for _ in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    done = trials(storage, name)
    numbers = [t.number for t in done]
    assert sorted(numbers) == list(range(len(numbers)))  # unique, no gaps
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    assert 8 <= len(complete) <= 9  # each worker stops at the count; at most one trial of overshoot per extra worker
    assert len({t.user_attrs["pid"] for t in complete}) == 2  # both worked on the one study


def test_two_workers_share_one_sqlite_study(tmp_path):
    _two_workers_share(f"sqlite:///{tmp_path / 'study.db'}")


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL (initdb) is not installed; .ci/run installs it")
def test_two_workers_share_one_postgresql_study():
    with postgres_server() as url:
        _two_workers_share(url)
