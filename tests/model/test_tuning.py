"""The tune step on the tiny world: real trials (training from the starting model, scored on the
validation split), their outputs and MLflow runs; failed trials; the pruner; the test split never read;
train.use_tuned."""

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState

from compclip.config import ConfigError
from compclip.tuning import objective as objective_module
from compclip.tuning.best import apply_tuned
from compclip.tuning.run import tune
from compclip.tuning.study import make_pruner, make_storage, open_study, storage_url
from tests.conftest import REPO


def tune_params(p, tmp: Path, **tune_updates):
    t = p.tune.model_copy(update={"out_dir": tmp / "tune", **tune_updates})
    return p.model_copy(update={"tune": t})


@pytest.fixture(scope="module")
def tuned(generated, tmp_path_factory):
    p, _ = generated
    p = tune_params(p, tmp_path_factory.mktemp("tuned"), methods=["ce_clip"])
    return p, tune(p)


def test_a_study_writes_best_params_trials_and_plots(tuned):
    p, summary = tuned
    out = Path(p.tune.out_dir)
    s = summary["ce_clip"]
    assert s["trials"]["complete"] + s["trials"]["pruned"] == 3
    best = yaml.safe_load((out / "best_params.yaml").read_text())["ce_clip"]
    assert best["status"] == "ok" and set(best["params"]) == {
        "loss.ce_clip.imc_weight", "loss.ce_clip.cmr_weight", "loss.ce_clip.upper_bound", "train.lr"}
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == sum(s["trials"].values()) and set(trials["method"]) == {"ce_clip"}
    assert best["value"] == trials[trials["state"] == "COMPLETE"]["value"].max() or s["feasible"] < s["trials"]["complete"]
    assert {"intermediate_values_2", "constraints_r1_drop", "user_attrs_val_r1"} <= set(trials.columns)
    for name in ("history", "importances", "parallel"):
        assert (out / "plots/ce_clip" / f"{name}.png").stat().st_size > 1000, s["plots"][name]
    assert (out / "study/study.db").is_file() and (out / "study/storage.txt").read_text().startswith("sqlite:///")
    assert s["baseline"]["reference"] == p.tune.r1_reference == "clip"  # params.yaml's
    assert set(s["baseline"]) == {"reference", "compositional", "r1", "i2t_R@1", "t2i_R@1", "n", "r1_n", "start"}
    assert s["baseline"]["r1_n"]["images"] > 0 and min(s["baseline"]["n"].values()) > 0


def test_the_study_is_one_mlflow_run_with_a_nested_run_per_trial(tuned):
    p, summary = tuned
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.`optuna.study` = '{summary['ce_clip']['study']}'")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    parent = runs.iloc[0]["run_id"]
    trials = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert len(trials) == sum(summary["ce_clip"]["trials"].values())
    client = mlflow.MlflowClient()
    for _, t in trials.iterrows():
        history = [m.step for m in client.get_metric_history(t["run_id"], "val_compositional")]
        assert history[0] == 2  # the intermediate value, reported before the final one
        assert "params.loss.ce_clip.imc_weight" in t and t["status"] in ("FINISHED", "KILLED")
    assert {"tune/best_params.yaml", "tune/trials.csv", "tune/history.png"} <= {
        a.path for a in client.list_artifacts(parent, "tune")}


def test_a_rerun_resumes_the_finished_study_without_new_trials(tuned):
    p, summary = tuned
    again = tune(p)
    assert again["ce_clip"]["study"] == summary["ce_clip"]["study"] and again["ce_clip"]["trials"] == summary["ce_clip"]["trials"]


def test_start_as_the_reference_keeps_only_the_starting_models_scores(world, tmp_path):
    base, _ = world
    p = tune_params(base, tmp_path, methods=["clip"], n_trials=1, pruner="none", r1_reference="start")
    b = tune(p)["clip"]["baseline"]
    start = objective_module.starting_model(p, torch.device("cpu"))
    assert b["reference"] == "start" and "start" not in b
    assert b["r1"] == objective_module.make_scorer(p, start, torch.device("cpu"))(start.model)["r1"]


def test_a_reference_method_is_fine_tuned_as_a_trial_and_each_trial_is_compared_with_it(generated, tmp_path):
    """tune.r1_reference: clip trained for tune.max_steps from the same start is the R@1 reference; the
    starting model's scores are kept beside it. MLflow off: the study runs without tracking."""
    base, _ = generated
    p = tune_params(base, tmp_path, methods=["negclip"], n_trials=1, pruner="none", r1_reference="clip")
    p = p.model_copy(update={"mlflow": p.mlflow.model_copy(update={"enabled": False})})
    b = tune(p)["negclip"]["baseline"]
    assert b["reference"] == "clip" and set(b["start"]) == {"compositional", "r1", "i2t_R@1", "t2i_R@1", "n", "r1_n"}
    again = objective_module.reference_scores(p, "clip", torch.device("cpu"))  # training is deterministic
    assert {k: b[k] for k in b["start"]} == {k: again[k] for k in b["start"]}
    start = objective_module.starting_model(p, torch.device("cpu"))
    assert objective_module.make_scorer(p, start, torch.device("cpu"))(start.model)["r1"] == b["start"]["r1"]
    trial = pd.read_csv(Path(p.tune.out_dir) / "trials.csv").iloc[0]
    assert trial["user_attrs_r1_drop"] == pytest.approx(b["r1"] - trial["user_attrs_val_r1"])
    assert trial["constraints_r1_drop"] == pytest.approx(trial["user_attrs_r1_drop"] - p.tune.max_r1_drop)


def test_r1_reference_must_be_start_or_a_method(world):
    base, _ = world
    with pytest.raises(ValueError, match="tune.r1_reference: 'nope' is neither `start` nor a key of `methods`"):
        type(base).model_validate({**base.model_dump(by_alias=True), "tune": {**base.tune.model_dump(), "r1_reference": "nope"}})


@pytest.mark.filterwarnings("ignore:Fixed parameter")
def test_a_trial_that_raises_or_returns_nan_fails_with_its_reason_and_the_study_goes_on(world, tmp_path, monkeypatch):
    base, _ = world
    p = tune_params(base, tmp_path, methods=["clip"], n_trials=2, max_failed_trials=4, pruner="none")
    t = p.tune
    study = open_study("clip-failures", make_storage(storage_url(t), t.heartbeat_interval, t.grace_period), t, p.seed)
    study.enqueue_trial({"train.lr": 1.0e7})  # out of the range on purpose: the loss explodes, the trainer raises
    study.enqueue_trial({"train.lr": 1.0e-3})  # returns NaN (below)
    real_run = objective_module.Objective._run

    def nan_on_second(self, trial):
        value = real_run(self, trial)
        return float("nan") if trial.number == 1 else value

    monkeypatch.setattr(objective_module.Objective, "_run", nan_on_second)
    monkeypatch.setattr("compclip.tuning.run.study_name", lambda method, identity: "clip-failures")
    summary = tune(p)
    trials = {tr.number: tr for tr in study.get_trials()}
    assert trials[0].state == TrialState.FAIL and "FloatingPointError" in trials[0].user_attrs["fail_reason"]
    assert "loss is" in trials[0].user_attrs["fail_reason"]
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["fail_reason"] == "objective is nan"
    assert summary["clip"]["trials"]["complete"] == 2 and summary["clip"]["trials"]["fail"] == 2  # it went on
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    parent = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`optuna.study` = 'clip-failures'")
    nested = mlflow.search_runs(search_all_experiments=True,
                                filter_string=f"tags.mlflow.parentRunId = '{parent.iloc[0]['run_id']}'")
    by_trial = {int(r["tags.optuna.trial"]): r for _, r in nested.iterrows()}
    assert by_trial[0]["status"] == "FAILED" and by_trial[0]["tags.optuna.state"] == "FAIL"
    assert by_trial[0]["tags.fail_reason"].startswith("FloatingPointError")
    assert all(not math.isnan(tr.value) for tr in trials.values() if tr.state == TrialState.COMPLETE)


def test_the_study_stops_with_the_reasons_when_every_trial_fails(world, tmp_path):
    base, _ = world
    p = tune_params(base, tmp_path, methods=["clip"], n_trials=2, max_failed_trials=2, pruner="none",
                    space={"train.lr": base.tune.space["train.lr"].model_copy(update={"low": 1.0e6, "high": 1.0e7})})
    with pytest.raises(Exception, match="2 trials failed before 2 finished.*FloatingPointError"):
        tune(p)


@pytest.mark.parametrize("kind, warmup, first_prunable", [("median", 0, 2), ("median", 5, 6),
                                                                   ("hyperband", 0, None)])  # its rung: by bracket
def test_the_pruner_prunes_a_trial_whose_intermediate_values_are_bad(world, kind, warmup, first_prunable):
    base, _ = world
    cfg = base.tune.model_copy(update={"pruner": kind, "pruner_startup_trials": 2, "max_steps": 8, "eval_every": 2,
                                       "pruner_warmup_steps": warmup})
    # Hyperband puts a trial in a bracket by a hash of the study's name: a random name now and then left the
    # bad trial alone in its bracket (nothing to compare with, never pruned); this name does not
    study = optuna.create_study(study_name="pruner-test", direction="maximize", pruner=make_pruner(cfg))
    for good in (0.8, 0.85, 0.9, 0.9, 0.95):  # each at least the median so far: never pruned
        trial = study.ask()
        for step in (2, 4, 6):  # as the objective does: report, then ask (Hyperband records its rungs there)
            trial.report(good, step)
            assert not trial.should_prune()
        study.tell(trial, good)
    bad = study.ask()
    pruned_at = None
    for step in (2, 4, 6):
        bad.report(0.1, step)
        if bad.should_prune():
            pruned_at = step
            break
    assert pruned_at is not None and pruned_at == (first_prunable or pruned_at)
    none = optuna.create_study(direction="maximize", pruner=make_pruner(cfg.model_copy(update={"pruner": "none"})))
    trial = none.ask()
    trial.report(0.0, 2)
    assert not trial.should_prune()


AUDIT = """
import json, os, pickle, sys
opened = []
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
        opened.append(os.path.abspath(os.fspath(args[0])))
sys.addaudithook(hook)
p = pickle.loads(open(sys.argv[1], "rb").read())
from compclip.tuning.run import tune
tune(p)
open(sys.argv[2], "w").write(json.dumps(opened))
"""


def test_tuning_never_opens_a_test_split_file(world, tmp_path):
    base, _ = world
    p = tune_params(base, tmp_path, methods=["clip"], n_trials=2)
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(p))
    (tmp_path / "audit.py").write_text(AUDIT)
    out = subprocess.run([sys.executable, str(tmp_path / "audit.py"), str(tmp_path / "p.pkl"), str(tmp_path / "opened.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    opened = [Path(f) for f in json.loads((tmp_path / "opened.json").read_text())]
    synth = Path(p.synth.out_dir).resolve()
    test_files = [f for f in opened if f.is_relative_to(synth / "coco/test") or f.is_relative_to(synth / "sugarcrepe")]
    assert not test_files, test_files[:5]
    # and the hook saw the validation split being read
    assert any(f.is_relative_to(synth / "coco/val") for f in opened)
    assert any(f.is_relative_to(synth / "sugarcrepe_val") for f in opened)


def test_use_tuned_merges_the_best_values_into_the_tuned_method_only(world, tmp_path):
    base, _ = world
    best = tmp_path / "best_params.yaml"
    best.write_text(yaml.safe_dump({
        "ce_clip": {"status": "ok", "trial": 2, "params": {"loss.ce_clip.imc_weight": 0.33, "train.lr": 0.0007}},
        "negclip": {"status": "No feasible trials are completed yet.", "params": {}}}))
    tuned = apply_tuned(base, "ce_clip", best)
    assert tuned.loss.ce_clip.imc_weight == 0.33 and tuned.train.lr == 0.0007
    assert tuned.loss.ce_clip.cmr_weight == base.loss.ce_clip.cmr_weight  # untouched keys keep params.yaml's
    assert apply_tuned(base, "negclip", best) is base and apply_tuned(base, "clip", best) is base
    with pytest.raises(ConfigError, match="dvc repro tune"):
        apply_tuned(base, "ce_clip", tmp_path / "missing.yaml")


def test_workers_processes_share_the_study(world, tmp_path):
    base, _ = world
    p = tune_params(base, tmp_path, methods=["clip"], n_trials=3, pruner="none")
    summary = tune(p, workers=2)  # two spawned processes on the study's sqlite storage
    c = summary["clip"]["trials"]
    assert 3 <= c["complete"] <= 4 and c["running"] == 0 and c["fail"] == 0
    numbers = pd.read_csv(Path(p.tune.out_dir) / "trials.csv")["number"].tolist()
    assert sorted(numbers) == list(range(len(numbers)))


def test_new_validation_files_start_a_new_study_instead_of_resuming(world, tmp_path):
    from compclip.tuning.run import identity
    from compclip.tuning.study import study_name

    base, _ = world
    p = tune_params(base, tmp_path, methods=["clip"])
    val = tmp_path / "val"
    val.mkdir()
    for f in Path(p.tune.val.data).glob("*.json"):
        (val / f.name).write_bytes(f.read_bytes())
    moved = p.model_copy(update={"tune": p.tune.model_copy(update={"val": p.tune.val.model_copy(update={"data": val})})})
    assert study_name("clip", identity(p, "clip")) == study_name("clip", identity(moved, "clip"))  # same content
    first = sorted(val.glob("*.json"))[0]
    first.write_text(first.read_text().replace("a ", "the ", 1))
    assert study_name("clip", identity(p, "clip")) != study_name("clip", identity(moved, "clip"))


def test_a_storage_that_is_not_a_database_url_is_a_clear_error():
    from compclip.errors import UserError

    with pytest.raises(UserError, match="not an SQLAlchemy database URL"):
        make_storage("reports/tune/study.db", 10, 60)
