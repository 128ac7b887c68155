"""`dvc repro` of the whole DAG on a tiny params override, in a temporary copy of the repository: every
stage runs, a second repro is a no-op, each stage reads only params it declares, editing any module a
stage imports makes `dvc status` report exactly the stages that import it, and `dvc exp run -S
train.max_steps=N` trains N steps."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml

from compclip.config import EXECUTION_ONLY, TRACE_ENV, TUNE_EXECUTION_ONLY
from tests.dvc_deps import code_deps, stage_module

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
    p["tune"].update(n_trials=2, max_steps=2, eval_every=1, pruner_startup_trials=1)
    for values in p.get("method_overrides", {}).values():  # a method's own budget shrinks with the rest
        if "train.max_steps" in values:
            values["train.max_steps"] = 3
    params_file.write_text(yaml.safe_dump(p, sort_keys=False))


def dvc(cwd: Path, *args: str, env: dict | None = None) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    out = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


# foreach stages share one params list: a method reads only its own terms' part of `loss` and only the tables
# its terms need, but DVC cannot give each method its own list
OVER_DECLARED = {"train": {"loss", "negatives.out_dir", "positives.out_dir", "concepts.out_dir"},
                 # like train: a tuned method reads only its terms' tables (ce_clip: negatives only)
                 "tune": {"negatives.out_dir", "positives.out_dir", "concepts.out_dir"},
                 # read only when the champion was scored on another benchmark and is scored again
                 "register": {"seed", "train.device"}}


def declared_params(repo: Path) -> dict[str, list[str]]:
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return {st.name: [k for d in st.deps if type(d).__name__ == "ParamsDependency" for k in d.params]
                for st in r.index.stages}


def traced_reads(trace: Path) -> dict[str, set[str]]:
    reads = defaultdict(set)
    for line in trace.read_text().splitlines():
        e = json.loads(line)
        if e["module"].startswith("stages."):
            stage = e["module"].split(".")[1] + (f"@{e['argv'][0]}" if e["argv"] else "")
            reads[stage] |= set(e["reads"])
    return reads


def check_params(declared: dict[str, list[str]], reads: dict[str, set[str]]) -> list[str]:
    def covers(d, k):
        return k == d or k.startswith(d + ".")

    def execution_only(k):
        section, _, key = k.partition(".")
        return section in ("mlflow", "dask") or (section in ("train", "pretrain") and key in EXECUTION_ONLY) or \
            (section == "tune" and key in TUNE_EXECUTION_ONLY)

    problems = []
    for stage, keys in reads.items():
        leaves = {k for k in keys if not any(o.startswith(k + ".") for o in keys)}
        if miss := sorted(k for k in leaves if not execution_only(k) and not any(covers(d, k) for d in declared[stage])):
            problems.append(f"{stage} reads undeclared params {miss}")
        allowed = OVER_DECLARED.get(stage.split("@")[0], set())
        if unused := sorted(d for d in declared[stage] if d not in allowed
                            and not any(covers(d, k) or covers(k, d) for k in keys)):
            problems.append(f"{stage} declares params it never reads {unused}")
    return problems


def changed_stages(status: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^(\S+):\s*$", status, re.M)}


def test_dvc_repro_tiny(tmp_path):
    repo = tmp_path / "repo"
    copy_repo(repo)
    shrink(repo / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    trace = tmp_path / "params_reads.jsonl"
    dvc(repo, "repro", env={TRACE_ENV: str(trace)})
    summary = json.loads((repo / "data/ingest/summary.json").read_text())
    assert summary["read"] == summary["kept"] + summary["quarantined"] and summary["kept"] > 0
    m = pd.read_parquet(repo / "data/ingest/manifest.parquet")
    assert m.groupby("image_path")["split"].nunique().max() == 1  # no image crosses splits
    methods = yaml.safe_load((repo / "params.yaml").read_text())["methods"]
    for method in methods:
        metrics = json.loads((repo / f"reports/evaluate/{method}/metrics.json").read_text())
        assert len(metrics["sugarcrepe"]) == 7 and "i2t_R@1" in metrics["retrieval"], method
        assert metrics["hard_positives"]["all"]["augmented"]["n"] > 0 and "level2" in metrics["abstraction"]
        assert json.loads((repo / f"models/{method}/summary.json").read_text())["steps"] == 3
    assert (repo / "reports/compare/compare.png").stat().st_size > 0
    best = yaml.safe_load((repo / "reports/tune/best_params.yaml").read_text())
    assert set(best) == {"ce_clip"} and (repo / "reports/tune/study/study.db").is_file()
    decision = json.loads((repo / "reports/registry/decision.json").read_text())
    assert decision["status"] in ("promoted", "refused") and set(decision["registered"]) == set(methods)
    assert "combined" in (repo / "reports/compare/compare.md").read_text()
    assert (repo / "mlflow/mlflow.db").is_file()
    again = dvc(repo, "repro")
    assert "Running stage" not in again  # a second repro is a no-op
    status = dvc(repo, "status")
    assert "up to date" in status.lower()

    # the recorded comparison (bench/sweep.py --no-run): every method, n beside every accuracy, provenance
    rec = subprocess.run([sys.executable, str(REPO / "bench/sweep.py"), "--no-run", "--out", "sweep.json"], cwd=repo,
                         capture_output=True, text=True, timeout=300)
    assert rec.returncode == 0, rec.stderr[-3000:]
    record = json.loads((repo / "sweep.json").read_text())
    assert set(record["results"]["methods"]) == set(methods)
    assert record["provenance"]["params"]["train"]["max_steps"] == 3
    # the study (its R@1 reference: clip fine-tuned as long as a trial) and the registry's decision, recorded too
    baseline = record["results"]["tune"]["ce_clip"]["baseline"]
    assert baseline["reference"] == "clip" and "r1" in baseline["start"]
    assert record["results"]["registry"]["status"] == decision["status"]
    assert all(r["train"]["steps"] == 3 and r["train"]["device"] == "cpu" for r in record["results"]["methods"].values())
    assert "seen combinations" in rec.stdout and re.search(r"swap_obj\s+\d+\s", rec.stdout)
    # the suite: every benchmark's headline for every method and the blind baseline, n beside each
    assert record["results"]["blind"]["suite"]["coco-order"]["aggregate"]["precision@1"]["n"] > 0
    assert re.search(r"aro-relation/macro\s+\d+\s", rec.stdout) and "blind" in rec.stdout
    for method in methods:
        suite = record["results"]["methods"][method]["metrics"]["suite"]
        assert {"aro-relation", "valse", "vl-checklist", "crepe", "zeroshot", "retrieval"} <= set(suite), method
    assert len(json.loads((repo / "reports/evaluate/clip/headline.json").read_text())) >= 10
    assert (repo / "reports/compare/compare.html").stat().st_size > 0

    # every stage ran, and read only params it declares (and declares none it never reads)
    declared = declared_params(repo)
    reads = traced_reads(trace)
    assert set(reads) == set(declared), set(declared) ^ set(reads)
    assert not (problems := check_params(declared, reads)), "\n".join(problems)

    # editing a module makes exactly the stages that import it stale, for the files dvc.yaml used to miss
    closures = {name: set(code_deps(stage_module(cmd))) for name, cmd in
                ((n, b.get("do", b)["cmd"]) for n, b in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].items())}
    for module in ("src/compclip/data/perturb.py", "src/compclip/data/images.py", "src/compclip/text/nlp.py",
                   "src/compclip/hashing.py", "src/compclip/config.py", "src/compclip/models/factory.py",
                   "src/compclip/text/lexicon/taxonomy.json"):
        path = repo / module
        original = path.read_text()
        path.write_text(original + ("\n" if module.endswith(".json") else "\n# edited\n"))
        try:
            expected = {s for s in declared if module in closures[s.split("@")[0]]}
            assert expected, module
            assert changed_stages(dvc(repo, "status")) == expected, module
        finally:
            path.write_text(original)
    assert "up to date" in dvc(repo, "status").lower()

    # max_steps means steps: 2+ epochs' worth with epochs: 1, as `dvc exp run -S` (the README's form)
    pairs = json.loads((repo / "models/clip/summary.json").read_text())["train_pairs"]
    steps = 2 * (pairs // 32) + 1
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], cwd=repo, check=True)
    dvc(repo, "exp", "run", "train@clip", "-S", f"train.max_steps={steps}", "-S", "train.epochs=1",
        env={"COMPCLIP_MLFLOW": "0"})
    assert json.loads((repo / "models/clip/summary.json").read_text())["steps"] == steps
