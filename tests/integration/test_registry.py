"""The model registry against a real MLflow server on 127.0.0.1 (sqlite backend) and against the default
sqlite store: registration with lineage, the gate refusing a worse model and accepting a better one, the
first champion against the baseline, forced promotion, rollback, and models:/<name>@champion loading the
registered weights."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from compclip import tracking
from compclip.cli import main as cli
from compclip.models.factory import create, load_model
from compclip.registry.promotion import promote, register_run, rollback, versions_table
from compclip.registry.store import CHALLENGER, CHAMPION, PREVIOUS, Registry
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture(params=["sqlite", "server"])
def setup(request, world, tmp_path):
    base, _ = world
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if request.param == "sqlite" else request.getfixturevalue("server")
    mlf = base.mlflow.model_copy(update={"tracking_uri": uri, "artifact_root": tmp_path / "artifacts",
                                         "experiment": f"registry-{request.param}"})
    name = f"compclip-test-{request.param}-{tmp_path.name}"
    p = base.model_copy(update={
        "mlflow": mlf, "methods": {"clip": {"clip": 1.0}, "ce_clip": {"ce_clip": 1.0}, "negclip": {"negclip": 1.0}},
        "train": base.train.model_copy(update={"out_dir": tmp_path / "models"}),
        "evaluate": base.evaluate.model_copy(update={"out_dir": tmp_path / "reports"}),
        "register_": base.register_.model_copy(update={"out_dir": tmp_path / "registry", "model_name": name})})
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train@ce_clip": {
        "cmd": "python -m stages.train ce_clip",
        "deps": [{"path": "src/compclip/config.py", "md5": "c0de"}, {"path": "data/negatives/negatives.parquet", "md5": "da7a"}],
        "params": {"params.yaml": {"seed": 42, "train.lr": 0.0005}},
        "outs": [{"path": "models/ce_clip/model.pt", "md5": "0de1"}]}}}))
    return p, lock


def trained(p, method: str, seed: int, comp: float, r1: float) -> dict:
    """A real training run's artifacts (a logged model) and the evaluate stage's files for it."""
    torch.manual_seed(seed)
    model = create("compclip-micro").model
    with tracking.run(p.mlflow, f"train-{method}") as run:
        run.log_model(model, "compclip-micro")
    models, reports = Path(p.train.out_dir) / method, Path(p.evaluate.out_dir) / method
    models.mkdir(parents=True, exist_ok=True)
    reports.mkdir(parents=True, exist_ok=True)
    (models / "summary.json").write_text(json.dumps({"run_id": run.run_id, "method": method}))
    part = {"accuracy": comp, "n": 50, "ci_low": comp, "ci_high": comp}
    (reports / "metrics.json").write_text(json.dumps({
        "sugarcrepe": {"swap_obj": {**part, "n": 100, "seen": part, "held_out": part}},
        "retrieval": {"i2t_R@1": r1, "t2i_R@1": r1, "captions": 60}}))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_register_gate_promote_rollback(setup, capsys):
    p, lock = setup
    name = p.register_.model_name
    weights = {"clip": trained(p, "clip", 0, 0.50, 0.30), "ce_clip": trained(p, "ce_clip", 1, 0.60, 0.29),
               "negclip": trained(p, "negclip", 2, 0.55, 0.30)}

    # first run: no champion; the best (ce_clip) beats the baseline clip by 0.10 with R@1 -0.01: champion
    d1 = register_run(p, lock)
    assert d1["status"] == "promoted" and d1["reference"]["kind"] == "baseline" and d1["reference"]["method"] == "clip"
    assert d1["checks"][0]["value"] == pytest.approx(0.10) and d1["checks"][1]["value"] == pytest.approx(0.01)
    reg = Registry(name, p.mlflow)
    v_ce = reg.alias(CHAMPION)
    ce = str(v_ce.version)
    assert ce == d1["registered"]["ce_clip"] and str(reg.alias(CHALLENGER).version) == ce
    assert v_ce.tags["method"] == "ce_clip" and v_ce.tags["gate.status"] == "promoted"
    assert json.loads(v_ce.tags["lineage.data"]) == {"data/negatives/negatives.parquet": "da7a"}  # from dvc.lock
    assert json.loads(v_ce.tags["lineage.model"]) == {"models/ce_clip/model.pt": "0de1"}
    assert len(v_ce.tags["params_digest"]) == 16 and v_ce.tags["git_commit"] and v_ce.tags["benchmark_digest"]
    assert float(v_ce.tags["metric.compositional"]) == 0.60 and v_ce.tags["metric.compositional_n"] == "100"
    assert json.loads((Path(p.register_.out_dir) / "decision.json").read_text())["status"] == "promoted"
    assert "challenger v" in capsys.readouterr().out

    # models:/<name>@champion loads exactly the registered weights
    loaded = load_model(f"models:/{name}@champion").model.state_dict()
    assert all(torch.equal(loaded[k], weights["ce_clip"][k]) for k in weights["ce_clip"])

    # a rerun of the stage registers nothing twice and leaves the champion alone
    d_same = register_run(p, lock)
    assert d_same["status"] == "unchanged" and d_same["registered"] == d1["registered"]

    # a retrained negclip gains only 0.005 over the champion: refused, champion unchanged
    trained(p, "negclip", 3, 0.605, 0.30)
    d2 = register_run(p, lock)
    assert d2["status"] == "refused" and d2["challenger"]["method"] == "negclip"
    assert d2["reference"] == {**d2["reference"], "kind": "champion", "version": ce, "rescored": False}
    assert "compositional_gain +0.0050 (needs >= 0.01)" in d2["reason"]
    assert str(reg.alias(CHAMPION).version) == ce and str(reg.alias(CHALLENGER).version) == d2["registered"]["negclip"]
    refused = d2["registered"]["negclip"]

    # a big compositional gain that costs R@1 0.09 is refused too
    trained(p, "negclip", 4, 0.70, 0.20)
    d3 = register_run(p, lock)
    assert d3["status"] == "refused" and [c["passed"] for c in d3["checks"]] == [True, False]

    # a better one passes; the old champion becomes previous-champion
    trained(p, "negclip", 5, 0.70, 0.29)
    d4 = register_run(p, lock)
    assert d4["status"] == "promoted"
    assert str(reg.alias(CHAMPION).version) == d4["registered"]["negclip"] and str(reg.alias(PREVIOUS).version) == ce
    assert "|".join(versions_table(name, p.mlflow).split("\n")[0].split()[:3]) == "version|method|aliases"

    # rollback restores the previous champion in one command
    r = rollback(name, p.mlflow)
    assert r["champion"] == ce and str(reg.alias(CHAMPION).version) == ce and reg.alias(PREVIOUS) is None
    assert reg.version(d4["registered"]["negclip"]).tags["rolled_back"]

    # a person forces the refused version through, with who and why recorded
    with pytest.raises(Exception, match="--force needs --reason"):
        promote(name, refused, p.mlflow, p.register_, force=True)
    gated = promote(name, refused, p.mlflow, p.register_)
    assert gated["status"] == "refused" and str(reg.alias(CHAMPION).version) == ce
    forced = promote(name, refused, p.mlflow, p.register_, force=True, reason="ships with the demo", by="alice")
    assert forced["status"] == "forced" and str(reg.alias(CHAMPION).version) == refused
    tags = reg.version(refused).tags
    assert (tags["promotion.forced"], tags["promotion.by"], tags["promotion.reason"]) == ("true", "alice", "ships with the demo")
    assert str(reg.alias(PREVIOUS).version) == ce

    # the CLI: the table with aliases, and `evaluate --model models:/...@champion`
    assert cli(["models", "--name", name, "--tracking-uri", p.mlflow.tracking_uri]) == 0
    table = capsys.readouterr().out
    assert f"{CHAMPION}" in table and PREVIOUS in table and "0.6050 (100)" in table
    out = Path(p.evaluate.out_dir) / "champion.json"
    s = p.evaluate.sugarcrepe
    assert cli(["evaluate", "sugarcrepe", "--model", f"models:/{name}@champion", "--data", str(s.data), "--images",
                str(s.images), "--out", str(out), "--bootstrap-samples", "10", "--tracking-uri", p.mlflow.tracking_uri]) == 0
    assert json.loads(out.read_text())["model"] == f"models:/{name}@champion"


def test_the_first_champion_must_beat_the_baseline(setup):
    p, lock = setup
    trained(p, "clip", 0, 0.50, 0.30)
    trained(p, "ce_clip", 1, 0.505, 0.30)
    trained(p, "negclip", 2, 0.40, 0.30)
    d = register_run(p, lock)
    assert d["status"] == "refused" and d["reference"]["kind"] == "baseline"
    assert Registry(p.register_.model_name, p.mlflow).alias(CHAMPION) is None


def test_a_champion_scored_on_another_benchmark_is_scored_again_before_the_gate(setup, tmp_path):
    p, lock = setup
    trained(p, "clip", 0, 0.50, 0.30)
    trained(p, "ce_clip", 1, 0.60, 0.29)
    trained(p, "negclip", 2, 0.55, 0.30)
    assert register_run(p, lock)["status"] == "promoted"
    # the benchmark changes (one item fewer): the champion's tagged numbers no longer compare
    changed = tmp_path / "sugarcrepe"
    changed.mkdir()
    for f in Path(p.evaluate.sugarcrepe.data).glob("*.json"):
        data = json.loads(f.read_text())
        if isinstance(data, dict) and data:
            data.pop(sorted(data)[0])
        (changed / f.name).write_text(json.dumps(data))
    q = p.model_copy(update={"evaluate": p.evaluate.model_copy(update={
        "bootstrap_samples": 10, "sugarcrepe": p.evaluate.sugarcrepe.model_copy(update={"data": changed})})})
    # every method is trained and evaluated again: the champion's version is no longer one of this run's
    trained(q, "clip", 4, 0.50, 0.30)
    trained(q, "ce_clip", 5, 0.55, 0.30)
    trained(q, "negclip", 3, 0.65, 0.30)
    d = register_run(q, lock)
    assert d["reference"]["kind"] == "champion" and d["reference"]["rescored"] is True
    rescored = json.loads((Path(p.register_.out_dir) / "rescored" / f"v{d['reference']['version']}" / "metrics.json").read_text())
    assert d["reference"]["headline"]["compositional_n"] == sum(f["n"] for f in rescored["sugarcrepe"].values())
    reg = Registry(p.register_.model_name, p.mlflow)
    champion, challenger = reg.version(d["reference"]["version"]), reg.version(d["challenger"]["version"])
    assert champion.tags["benchmark_digest"] == challenger.tags["benchmark_digest"]  # now scored on the same one


def test_without_tracking_the_stage_records_a_skip_instead_of_failing(world, tmp_path):
    base, _ = world
    p = base.model_copy(update={"mlflow": base.mlflow.model_copy(update={"enabled": False,
                                                                         "tracking_uri": f"sqlite:///{tmp_path}/none.db"}),
                                "register_": base.register_.model_copy(update={"out_dir": tmp_path / "registry"})})
    d = register_run(p, tmp_path / "dvc.lock")
    assert d["status"] == "skipped" and "tracking is off" in d["reason"]
    assert json.loads((tmp_path / "registry/decision.json").read_text())["provenance"]["commit"]
    assert not (tmp_path / "none.db").exists()
