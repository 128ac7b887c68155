"""Every bench script runs (its --smoke mode, tiny sizes) and writes its results with their provenance, so
a benchmark cannot break unnoticed. The numbers are not checked: speed belongs in bench/, not in tests."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = ["train_throughput.py", "method_step_time.py", "negatives_throughput.py", "negatives_dask.py",
           "negatives_speed.py", "negatives_quality.py", "gpu_check.py",
           "sweep.py", "flow_run.py", "eval_scoring.py", "step_speedups.py", "combination_negatives.py", "demo_time.py"]
COVERED_ELSEWHERE = {"sweep.py": "test_dvc_repro runs it", "flow_run.py": "test_flows runs the same path"}


def test_every_bench_script_is_covered():
    assert sorted(p.name for p in (REPO / "bench").glob("*.py")) == sorted(SCRIPTS)


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in COVERED_ELSEWHERE])
def test_bench_script_smoke(script, tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(REPO / "bench" / script), "--smoke", "--out", str(out)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    record = json.loads(out.read_text())
    prov = record["provenance"]
    for key in ("commit", "torch", "device", "params", "command", "time_utc"):
        assert key in prov, key
    assert prov["params"]["smoke"] is True and record["results"]


def test_combination_negatives_tables_built_on_one_machine_train_on_another(tmp_path):
    """The GPU path: --tables-only where spaCy is, then --reuse-tables (no table is built again); clip reads no
    negatives, so it trains once as the reference, and negclip under both tables."""
    script, work, out = str(REPO / "bench" / "combination_negatives.py"), tmp_path / "work", tmp_path / "r.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    built = {}
    for extra in (["--tables-only"], ["--reuse-tables", "--methods", "clip", "negclip", "--out", str(out)]):
        run = subprocess.run([sys.executable, script, "--smoke", "--work", str(work), *extra], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        tables = {t: t.stat().st_mtime_ns for t in work.glob("negatives_*/negatives.parquet")}
        assert len(tables) == 2 and (not built or tables == built)  # the second run wrote no table
        built = tables
    results = json.loads(out.read_text())["results"]
    assert results["complete"] and results["methods"] == ["negclip"] and list(results["reference"]) == ["clip"]
    assert sorted(results["train_seconds"]) == ["clip/reference", "negclip/drop", "negclip/keep"]
    for policy in ("keep", "drop"):
        assert set(results["policies"][policy]["methods"]["negclip"]) >= {"swap_obj", "swap_att"}
    models = work / "models_3steps"
    assert not (models / "keep" / "clip").exists() and (models / "reference" / "clip" / "model.pt").is_file()
