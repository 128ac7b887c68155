"""`dvc repro` of the whole DAG on a tiny params override, in a temporary copy of the repository."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "data", "models", "reports", "mlflow", ".pytest_cache", ".dvc/cache", ".dvc/tmp"}

pytestmark = pytest.mark.slow


def copy_repo(dst: Path) -> None:
    def ignore(d, names):
        rel = Path(d).relative_to(REPO)
        return [n for n in names if (rel / n).as_posix() in SKIP or n == "__pycache__" or n.endswith(".egg-info")]

    shutil.copytree(REPO, dst, ignore=ignore)
    (dst / "dvc.lock").unlink(missing_ok=True)


def shrink(params_file: Path) -> None:
    p = yaml.safe_load(params_file.read_text())
    p["synth"]["scenes"] = {"train": 160, "val": 10, "test": 40}
    p["synth"].update(vg_scenes=10, cc3m_scenes=12, cc3m_shard_size=8)
    p["model"]["name"] = "compclip-micro"
    p["pretrain"].update(batch_size=32, epochs=1, warmup_steps=2, checkpoint_every_steps=0)
    p["train"].update(batch_size=32, epochs=1, max_steps=3, warmup_steps=1, checkpoint_every_steps=0)
    p["concepts"]["min_group_size"] = 3
    p["loss"]["clear_glass"].update(groups_per_batch=4, group_size=4)
    p["evaluate"]["bootstrap_samples"] = 100
    params_file.write_text(yaml.safe_dump(p, sort_keys=False))


def dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_dvc_repro_tiny(tmp_path):
    repo = tmp_path / "repo"
    copy_repo(repo)
    shrink(repo / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "repro")
    summary = json.loads((repo / "data/ingest/summary.json").read_text())
    assert summary["read"] == summary["kept"] + summary["quarantined"] and summary["kept"] > 0
    m = pd.read_parquet(repo / "data/ingest/manifest.parquet")
    assert m.groupby("image_path")["split"].nunique().max() == 1  # no image crosses splits
    for method in yaml.safe_load((repo / "params.yaml").read_text())["methods"]:
        metrics = json.loads((repo / f"reports/{method}/metrics.json").read_text())
        assert len(metrics["sugarcrepe"]) == 7 and "i2t_R@1" in metrics["retrieval"], method
        assert metrics["hard_positives"]["all"]["augmented"]["n"] > 0 and "level2" in metrics["abstraction"]
        assert json.loads((repo / f"models/{method}/summary.json").read_text())["steps"] == 3
    assert (repo / "reports/compare/compare.png").stat().st_size > 0
    assert "combined" in (repo / "reports/compare/compare.md").read_text()
    assert (repo / "mlflow/mlflow.db").is_file()
    again = dvc(repo, "repro")
    assert "Running stage" not in again  # a second repro is a no-op
    status = dvc(repo, "status")
    assert "up to date" in status.lower()
