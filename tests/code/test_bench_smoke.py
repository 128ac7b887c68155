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
           "sweep.py", "flow_run.py", "eval_scoring.py", "step_speedups.py", "combination_negatives.py", "demo_time.py",
           "stage_startup.py", "positives_precision.py", "seed_check.py"]
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
    for extra in (["--tables-only"], ["--reuse-tables", "--methods", "clip", "negclip", "hard_positive", "--out", str(out)]):
        run = subprocess.run([sys.executable, script, "--smoke", "--work", str(work), *extra], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        tables = {t: t.stat().st_mtime_ns for t in work.glob("negatives_*/negatives.parquet")}
        assert len(tables) == 2 and (not built or tables == built)  # the second run wrote no table
        built = tables
    results = json.loads(out.read_text())["results"]
    assert results["complete"] and results["methods"] == ["negclip", "hard_positive"]
    assert list(results["reference"]) == ["clip"]
    assert sorted(results["train_seconds"]) == ["clip/reference", "hard_positive/drop", "hard_positive/keep",
                                                "negclip/drop", "negclip/keep"]
    for policy in ("keep", "drop"):
        for method in ("negclip", "hard_positive"):
            scores = results["policies"][policy]["methods"][method]
            assert set(scores) >= {"swap_obj", "swap_att", "hard_positives"}
            assert set(scores["hard_positives"]) == {"original", "augmented", "brittleness"}
    assert results["policies"]["drop"]["negative_rules"]["negclip"] == ["swap_nouns", "sc_swap_att"]  # its override
    models = work / "models_3steps"
    assert not (models / "keep" / "clip").exists() and (models / "reference" / "clip" / "model.pt").is_file()


def test_combination_negatives_one_table_shared_negatives(tmp_path):
    """--policies drop trains on one table; --shared-negatives gives negclip hard_positive's negatives (its
    method_overrides' rules are not read), into their own folder; brittleness is scored for every model."""
    script, work, out = str(REPO / "bench" / "combination_negatives.py"), tmp_path / "work", tmp_path / "r.json"
    run = subprocess.run([sys.executable, script, "--smoke", "--work", str(work), "--methods", "negclip",
                          "hard_positive", "--policies", "drop", "--shared-negatives", "--out", str(out)],
                         cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert list(results["policies"]) == ["drop"] and results["shared_negatives"]
    rules = results["policies"]["drop"]["negative_rules"]
    assert rules["negclip"] == rules["hard_positive"] == ["swap_nouns", "replace_adj", "replace_noun"]
    assert not (work / "negatives_keep").exists()
    assert (work / "models_3steps" / "drop_shared" / "negclip" / "model.pt").is_file()
    assert results["policies"]["drop"]["methods"]["hard_positive"]["hard_positives"]["brittleness"]["n"] > 0
