"""The train stage as real processes: `torchrun --nproc-per-node 2` (gloo on CPU) against one process,
and a SIGTERM mid-run that must leave the MLflow run KILLED and a checkpoint to resume from."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from compclip.models.checkpoint import load_checkpoint
from tests.conftest import REPO, run_params

pytestmark = pytest.mark.slow


def write_params(p, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(p.model_dump(mode="json", by_alias=True), sort_keys=False))


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def run(folder: Path, *launcher: str) -> None:
    out = subprocess.run([sys.executable, *launcher, "-m", "stages.train", "ce_clip"], cwd=folder, env=env(),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_two_processes_train_like_one(generated, tmp_path):
    base, _ = generated
    one = run_params(base, tmp_path / "one", epochs=1, max_steps=6, threads=1)
    two = run_params(base, tmp_path / "two", epochs=1, max_steps=6, threads=1)
    write_params(one, tmp_path / "one")
    write_params(two, tmp_path / "two")
    run(tmp_path / "one")
    run(tmp_path / "two", "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517")
    a = load_checkpoint(Path(one.train.out_dir) / "ce_clip/model.pt")["model"]
    b = load_checkpoint(Path(two.train.out_dir) / "ce_clip/model.pt")["model"]
    for k in a:  # same global batches, same gradients up to float rounding, 6 AdamW steps
        torch.testing.assert_close(b[k], a[k], atol=2e-4, rtol=1e-3, msg=k)
    mlflow.set_tracking_uri(two.mlflow.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[two.mlflow.experiment], filter_string="params.world_size = '2'")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"  # rank 0 alone logs


def test_sigterm_ends_the_run_killed_and_resume_finishes_it(generated, tmp_path):
    base, _ = generated
    p = run_params(base, tmp_path, epochs=2, checkpoint_every_steps=2, threads=1)
    write_params(p, tmp_path)
    log = open(tmp_path / "stderr.log", "w")  # a file, not a pipe: a full pipe would block the trainer
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", "ce_clip"], cwd=tmp_path, env=env(),
                            stdout=subprocess.DEVNULL, stderr=log)
    ckpts = Path(p.train.out_dir) / "ce_clip/checkpoints"
    deadline = time.time() + 300
    while not list(ckpts.glob("step_*.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    log.close()
    assert proc.returncode != 0 and "Terminated" in (tmp_path / "stderr.log").read_text()
    run_id = load_checkpoint(sorted(ckpts.glob("step_*.pt"))[-1])["run_id"]
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    assert mlflow.get_run(run_id).info.status == "KILLED"
    run(tmp_path)  # resume: the same MLflow run continues and finishes
    assert mlflow.get_run(run_id).info.status == "FINISHED"
