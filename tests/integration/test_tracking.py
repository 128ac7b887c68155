"""MLflow tracking as real processes: a fresh sqlite store opened by two processes at once (two trainings,
`dvc exp run -j 2`) works for both; tracking switched off needs no MLflow store at all."""

import os
import subprocess
import sys

import mlflow
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
from compclip.config import MlflowConfig
from compclip.tracking import run
cfg = MlflowConfig(tracking_uri=sys.argv[1], artifact_root=sys.argv[2], experiment="race")
with run(cfg, "p" + sys.argv[3]) as r:
    r.log_metrics({"x": float(sys.argv[3])})
print(r.run_id)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_create_a_fresh_store_at_once(tmp_path, attempt):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, uri, str(tmp_path / "art"), str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["race"])
    assert sorted(runs["metrics.x"]) == [0.0, 1.0] and set(runs["status"]) == {"FINISHED"}


def test_tracking_off_touches_no_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONPATH": str(REPO),
                                                                                   "COMPCLIP_MLFLOW": "0"}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = subprocess.run([sys.executable, "-c", SCRIPT, uri, str(tmp_path / "art"), "0"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "None" and not (tmp_path / "mlflow.db").exists()
