"""Evaluation: the CLI on a trained checkpoint, model specs, retrieval, clear errors."""

import json
from pathlib import Path

import mlflow
import pytest

from compclip.cli import main
from compclip.evaluation.run import run_evaluation
from compclip.errors import PretrainedUnavailable, UserError
from compclip.models.factory import create, load_model
from compclip.tracking import register_model


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    from compclip.training.trainer import train
    from tests.conftest import run_params

    base, manifest = world
    p = run_params(base, tmp_path_factory.mktemp("eval"), epochs=1)
    return p, manifest, train(p, "clip")


def test_cli_evaluate_sugarcrepe(trained, tmp_path, capsys):
    p, _, summary = trained
    out = tmp_path / "r.json"
    rc = main(["evaluate", "sugarcrepe", "--data", str(p.evaluate.sugarcrepe.data), "--images",
               str(p.evaluate.sugarcrepe.images), "--model", summary["model"], "--out", str(out),
               "--bootstrap-samples", "100"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r["sugarcrepe"]) == {"replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att",
                                    "add_obj", "add_att"}
    for v in r["sugarcrepe"].values():
        assert 0 <= v["ci_low"] <= v["accuracy"] <= v["ci_high"] <= 1 and v["n"] > 0
        assert 0 < v["held_out"]["n"] < v["n"]  # the held-out subset is scored on its own
        assert v["held_out"]["n"] + v["seen"]["n"] == v["n"]
    assert set(r["sugarcrepe_groups"]) == {"replace", "swap", "add"}


def test_stage_evaluation_logs_into_the_training_run(trained):
    p, manifest, summary = trained
    r = run_evaluation(summary["model"], p.evaluate, manifest, p.seed, "cpu", p.mlflow, summary["run_id"])
    assert r["retrieval"]["images"] == p.synth.scenes.test
    assert 0 <= r["retrieval"]["i2t_R@1"] <= r["retrieval"]["i2t_R@5"] <= r["retrieval"]["i2t_R@10"] <= 1
    assert json.loads((Path(p.evaluate.out_dir) / "metrics.json").read_text()) == json.loads(json.dumps(r))
    # the suite reads the same files through its own reader: the same decisions, the same n
    suite = r["suite"]["sugarcrepe"]["files"]
    for f, v in r["sugarcrepe"].items():
        assert (suite[f]["accuracy"], suite[f]["n"]) == (v["accuracy"], v["n"]), f
        assert suite[f]["held_out"]["n"] == v["held_out"]["n"]
    headline = json.loads((Path(p.evaluate.out_dir) / "headline.json").read_text())
    assert headline["sugarcrepe/mean"] == round(r["suite"]["sugarcrepe"]["aggregate"]["mean"]["accuracy"], 4)
    assert (Path(p.evaluate.out_dir) / "suite/sugarcrepe.scores.jsonl").exists()
    run = mlflow.get_run(summary["run_id"])
    assert run.data.metrics["eval/sugarcrepe/swap_att"] == r["sugarcrepe"]["swap_att"]["accuracy"]


def test_registered_model_loads_by_uri(trained):
    p, _, summary = trained
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    mv = register_model(summary["run_id"], "compclip-test")
    bundle = load_model(f"models:/compclip-test/{mv.version}")
    ref = load_model(summary["model"])
    tokens = ref.tokenizer(["a red square"])
    assert bundle.name == "compclip-micro"
    assert (bundle.model.encode_text(tokens) - ref.model.encode_text(tokens)).abs().max() < 1e-6


def test_bad_model_specs_are_explained(tmp_path):
    with pytest.raises(ValueError, match="not a file, not NAME:PRETRAINED"):
        load_model("nonsense")
    with pytest.raises(ValueError, match="has no pretrained tag 'nope'"):
        create("ViT-B-32", "nope")
    with pytest.raises(ValueError, match="unknown model"):
        create("no-such-model")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable compclip checkpoint"):
        load_model(str(tmp_path / "junk.pt"))


def test_pretrained_offline_says_what_to_do():
    # HF_HUB_OFFLINE=1 (conftest): fails at once instead of retrying the network
    with pytest.raises(PretrainedUnavailable, match="set `model.pretrained` in params.yaml to its local path"):
        create("RN50", "openai")


def test_cli_error_is_one_clear_line(tmp_path, capsys):
    rc = main(["evaluate", "sugarcrepe", "--data", str(tmp_path), "--images", str(tmp_path), "--model",
               "nonsense", "--out", str(tmp_path / "x.json")])
    assert rc == 1 and "compclip evaluate: error:" in capsys.readouterr().err


class _Payload:
    """Unpickling this runs os.system: what a tampered pickled model could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_mlflow_model_is_refused_not_run(trained, tmp_path):
    import pickle

    p, _, _ = trained
    marker = tmp_path / "pwned"
    folder = tmp_path / "model" / "data"
    folder.mkdir(parents=True)
    (folder / "model.pth").write_bytes(pickle.dumps(_Payload(marker)))  # mlflow.pytorch's pickle layout
    (tmp_path / "model" / "MLmodel").write_text("flavors:\n  pytorch:\n    model_data: data\n")
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "model"), artifact_path="model")
    with pytest.raises(UserError, match="pickled models are refused"):
        load_model(f"runs:/{run.info.run_id}/model")
    assert not marker.exists()


def test_missing_and_corrupt_images_are_counted_skips_not_a_crash(trained, tmp_path):
    import shutil

    p, _, summary = trained
    data, images = tmp_path / "sc", tmp_path / "img"
    shutil.copytree(p.evaluate.sugarcrepe.data, data)
    shutil.copytree(p.evaluate.sugarcrepe.images, images)
    items = json.loads((data / "swap_att.json").read_text())
    gone, bad = items["0"]["filename"], items["1"]["filename"]
    (images / gone).unlink()
    (images / bad).write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "r.json"
    rc = main(["evaluate", "sugarcrepe", "--data", str(data), "--images", str(images), "--model", summary["model"],
               "--out", str(out), "--bootstrap-samples", "100"])
    assert rc == 0
    r = json.loads(out.read_text())["sugarcrepe"]["swap_att"]
    uses = sum(it["filename"] in (gone, bad) for it in items.values())
    assert r["n"] == len(items) - uses and r["skipped"] == {
        "corrupt_image": sum(it["filename"] == bad for it in items.values()),
        "missing_image": sum(it["filename"] == gone for it in items.values())}


def test_stage_errors_one_line_for_the_user_a_traceback_for_bugs(capsys):
    from stages import run

    def user_problem():
        raise UserError("params.yaml: train.lr must be > 0")

    with pytest.raises(SystemExit) as e:
        run(user_problem)
    assert e.value.code == 1 and capsys.readouterr().err.strip() == "error: params.yaml: train.lr must be > 0"

    def bug():
        raise ValueError("shapes (3,) and (4,) not aligned")

    with pytest.raises(ValueError, match="not aligned"):  # not swallowed into one line: its traceback stays
        run(bug)

