"""Training: exact resume after a crash, MLflow run status, checkpoints that do not match are not resumed."""

import json
from pathlib import Path

import mlflow
import pytest
import torch

from compclip.models.checkpoint import latest_checkpoint, load_checkpoint
from compclip.training.trainer import train
from tests.conftest import run_params


def weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_status(p, run_id):
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    return mlflow.get_run(run_id).info.status


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    base, manifest = world
    tmp = tmp_path_factory.mktemp("straight")
    p = run_params(base, tmp)
    summary = train(p, "clip")
    return p, summary


def test_uninterrupted_run_is_logged(uninterrupted):
    p, summary = uninterrupted
    assert run_status(p, summary["run_id"]) == "FINISHED"
    run = mlflow.get_run(summary["run_id"])
    assert run.data.params["method"] == "clip" and "loss" in run.data.metrics and "logit_scale" in run.data.metrics
    history = mlflow.MlflowClient().get_metric_history(summary["run_id"], "loss")
    assert [m.step for m in history] == list(range(1, summary["steps"] + 1))  # every step logged
    assert run.data.tags["torch"] == torch.__version__


def test_resume_after_crash_gives_identical_weights(world, uninterrupted, tmp_path):
    base, manifest = world
    p_ref, ref = uninterrupted
    p = run_params(base, tmp_path)
    steps = ref["steps"]
    crash_at = steps // 2 + 2  # mid-epoch, a few steps after a checkpoint
    with pytest.raises(KeyboardInterrupt):
        train(p, "clip", stop_after_steps=crash_at)
    ckpt = latest_checkpoint(Path(p.train.out_dir) / "clip" / "checkpoints")
    first_run = load_checkpoint(ckpt)["run_id"]
    assert load_checkpoint(ckpt)["step"] < crash_at
    assert run_status(p, first_run) == "KILLED"  # never left RUNNING
    # the per-step metrics buffered before the interruption reached the store (logged every 25 steps otherwise)
    logged = [m.step for m in mlflow.MlflowClient().get_metric_history(first_run, "loss")]
    assert logged == list(range(1, crash_at + 1))

    resumed = train(p, "clip")
    assert resumed["run_id"] == first_run and run_status(p, first_run) == "FINISHED"
    assert same(weights(Path(p.train.out_dir) / "clip" / "model.pt"), weights(Path(p_ref.train.out_dir) / "clip" / "model.pt"))
    a, b = (load_checkpoint(latest_checkpoint(Path(x.train.out_dir) / "clip" / "checkpoints")) for x in (p, p_ref))
    assert a["step"] == b["step"] == steps
    assert same(a["optimizer"]["state"][0], b["optimizer"]["state"][0])


def test_changed_params_do_not_resume(world, uninterrupted, tmp_path):
    base, manifest = world
    p_ref, ref = uninterrupted
    p = run_params(base, tmp_path, lr=p_ref.train.lr * 2, epochs=1)
    out = Path(p.train.out_dir) / "clip"
    out.mkdir(parents=True)
    # seed the checkpoint folder with the other run's checkpoints
    src = Path(p_ref.train.out_dir) / "clip" / "checkpoints"
    (out / "checkpoints").mkdir()
    for f in src.glob("*.pt"):
        (out / "checkpoints" / f.name).write_bytes(f.read_bytes())
    summary = train(p, "clip")
    assert summary["run_id"] != ref["run_id"]  # a fresh run, not a continuation
    assert json.loads((out / "summary.json").read_text())["steps"] == ref["steps"] // 2


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(world, uninterrupted, tmp_path):
    base, manifest = world
    p_ref, ref = uninterrupted
    p = run_params(base, tmp_path)
    crash_at = ref["steps"] // 2 + 6  # two checkpoints on disk (every 5 steps)
    with pytest.raises(KeyboardInterrupt):
        train(p, "clip", stop_after_steps=crash_at)
    ckpts = sorted((Path(p.train.out_dir) / "clip" / "checkpoints").glob("step_*.pt"))
    assert len(ckpts) == 2
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])  # damaged after it was written
    resumed = train(p, "clip")
    assert resumed["steps"] == ref["steps"]
    assert same(weights(Path(p.train.out_dir) / "clip" / "model.pt"), weights(Path(p_ref.train.out_dir) / "clip" / "model.pt"))


def test_the_image_cache_changes_nothing_but_how_often_images_are_decoded(world, uninterrupted, tmp_path):
    """Training with every image decoded every time (image_cache_mb: 0) and with the images served from
    memory gives the same weights; the cached run decodes each distinct image at most once."""
    from compclip.data.manifest import load_split
    from compclip.training.data import shared_images

    base, manifest = world
    p_ref, _ = uninterrupted
    cold = run_params(base, tmp_path / "no_cache", image_cache_mb=0)
    cache = shared_images(0)
    hits, misses = cache.hits, cache.misses
    train(cold, "clip")
    assert not cache.tensors and cache.hits == hits
    hits, misses = cache.hits, cache.misses
    warm = run_params(base, tmp_path / "cache")
    train(warm, "clip")
    images = len(load_split(manifest, "train")[["image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]].drop_duplicates())
    assert 0 < cache.misses - misses <= images and cache.hits > hits
    reference = weights(Path(p_ref.train.out_dir) / "clip" / "model.pt")
    for p in (cold, warm):
        assert same(weights(Path(p.train.out_dir) / "clip" / "model.pt"), reference)


def test_amp_bf16_is_bf16_autocast_on_cpu_and_fp16_amp_is_refused_there(world, uninterrupted, tmp_path):
    """train.precision amp_bf16 on CPU trains under bf16 autocast (it used to run as fp32 unnoticed): fp32
    weights, finite, not those of the fp32 run; `amp` (fp16 with a GradScaler) is CUDA's: a clear error."""
    from compclip.errors import UserError

    base, _ = world
    p_ref, ref = uninterrupted
    p = run_params(base, tmp_path / "bf16", precision="amp_bf16")
    summary = train(p, "clip")
    assert summary["steps"] == ref["steps"]
    got, fp32 = (weights(Path(q.train.out_dir) / "clip" / "model.pt") for q in (p, p_ref))
    assert all(got[k].dtype == fp32[k].dtype and torch.isfinite(got[k]).all() for k in fp32 if got[k].is_floating_point())
    assert not same(got, fp32)
    with pytest.raises(UserError, match=r"train.precision: amp \(fp16"):
        train(run_params(base, tmp_path / "fp16", precision="amp"), "clip")
