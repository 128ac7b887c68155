"""Shared fixtures: a tiny shapes world made once per session, in the real file formats."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)
if "COMPCLIP_CACHE" not in os.environ:  # the token cache (text.tokens): the session's own, gone after it
    os.environ["COMPCLIP_CACHE"] = tempfile.mkdtemp(prefix="compclip-cache-")
    atexit.register(shutil.rmtree, os.environ["COMPCLIP_CACHE"], True)

from compclip.config import SuiteEntry, load_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI; a later test's subprocesses would inherit it."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def tiny_params(tmp: Path, **train_overrides):
    """The repo's params.yaml shrunk to seconds of work, with every output under tmp."""
    p = load_params(REPO / "params.yaml")
    synth = p.synth.model_copy(update={
        "out_dir": tmp / "synth", "scenes": p.synth.scenes.model_copy(update={"train": 240, "val": 20, "test": 60}),
        "vg_scenes": 20, "cc3m_scenes": 30, "cc3m_shard_size": 16})
    s = tmp / "synth"
    ingest = p.ingest.model_copy(update={
        "out_dir": tmp / "ingest", "vg": [s / "vg"], "cc3m": [s / "cc3m"],
        "coco": [c.model_copy(update={"captions": s / "coco/annotations" / f"captions_{k}.json", "images": s / "coco" / k})
                 for c, k in zip(p.ingest.coco, ("train", "val", "test"))]})
    model = p.model.model_copy(update={"name": "compclip-micro"})
    train = p.train.model_copy(update={"out_dir": tmp / "models", "batch_size": 32, "epochs": 2, "warmup_steps": 3,
                                       "checkpoint_every_steps": 5, "max_steps": None, "init_from": None,
                                       **train_overrides})
    # the suite's release-format files are the benchmarks stage's; here only the SugarCrepe files exist
    evaluate = p.evaluate.model_copy(update={
        "out_dir": tmp / "reports", "bootstrap_samples": 200,
        "sugarcrepe": p.evaluate.sugarcrepe.model_copy(update={"data": s / "sugarcrepe", "images": s / "coco/test"}),
        "suite": [SuiteEntry(benchmark="sugarcrepe", data=s / "sugarcrepe", images=s / "coco/test")]})
    mlf = p.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{tmp}/mlflow/mlflow.db",
                                      "artifact_root": tmp / "mlflow/artifacts"})
    tune = p.tune.model_copy(update={
        "out_dir": tmp / "tune", "n_trials": 3, "max_steps": 4, "eval_every": 2, "heartbeat_interval": 1,
        "grace_period": 2, "val": p.tune.val.model_copy(update={"data": s / "sugarcrepe_val", "images": s / "coco/val"})})
    register = p.register_.model_copy(update={"out_dir": tmp / "registry"})
    return p.model_copy(update={"synth": synth, "ingest": ingest, "model": model, "train": train,
                                "evaluate": evaluate, "mlflow": mlf, "tune": tune, "register_": register})


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A synthesized and ingested tiny world: (params, manifest path)."""
    from compclip.data.manifest import ingest
    from compclip.data.synth import synthesize

    tmp = tmp_path_factory.mktemp("world")
    p = tiny_params(tmp)
    synthesize(p.synth, p.seed)
    c = p.ingest
    ingest([(s.captions, s.images, s.split) for s in c.coco], c.vg, c.cc3m, c.out_dir, c.max_caption_words,
           c.verify_images, c.hash_split)
    return p, Path(c.out_dir) / "manifest.parquet"


def run_params(base, tmp: Path, **train_overrides):
    """base params (sharing its world and MLflow store) with training and report outputs under tmp."""
    return base.model_copy(update={
        "train": base.train.model_copy(update={"out_dir": tmp / "models", **train_overrides}),
        "evaluate": base.evaluate.model_copy(update={"out_dir": tmp / "reports"})})


@pytest.fixture(scope="session")
def generated(world, tmp_path_factory):
    """The tiny world's negatives, positives and concept tables, with params pointing at them."""
    from compclip.text.concepts_table import build_concepts
    from compclip.text.negatives_table import build_negatives
    from compclip.text.positives_table import build_positives

    p, manifest = world
    tmp = tmp_path_factory.mktemp("generated")
    neg = p.negatives.model_copy(update={"out_dir": tmp / "neg", "scenes": p.synth.out_dir / "scenes.jsonl"})
    pos = p.positives.model_copy(update={"out_dir": tmp / "pos", "caption_fraction": 1.0})
    con = p.concepts.model_copy(update={"out_dir": tmp / "con", "min_group_size": 3})
    build_negatives(manifest, neg, p.seed)
    build_positives(manifest, tmp / "neg/negatives.parquet", pos, p.seed)
    build_concepts(manifest, con, p.seed)
    loss = p.loss.model_copy(update={"clear_glass": p.loss.clear_glass.model_copy(
        update={"groups_per_batch": 4, "group_size": 4})})
    return p.model_copy(update={"negatives": neg, "positives": pos, "concepts": con, "loss": loss}), manifest
