"""The compositional methods end to end on the tiny world: every method trains and logs its terms,
CE-CLIP resumes after a crash to the same weights and thresholds, accumulation and 2-process DDP give
the one-process full-batch gradient."""

import math
import os
import socket
from pathlib import Path

import mlflow
import pytest
import torch
import torch.multiprocessing as mp

from compclip.config import LossConfig
from compclip.losses import build_loss
from compclip.models.checkpoint import latest_checkpoint, load_checkpoint
from compclip.models.factory import create
from compclip.training.step import forward_backward
from compclip.training.trainer import train
from tests.conftest import run_params

EXPECTED_TERMS = {
    "negclip": ["negclip/contrastive_loss"],
    "ce_clip": ["ce_clip/contrastive_loss", "ce_clip/imc_loss", "ce_clip/cmr_loss", "ce_clip/threshold/swap_nouns"],
    "hard_positive": ["hard_positive/contrastive_loss", "hard_positive/rank_loss"],
    "clear_glass": ["clear_glass/outer_loss", "clear_glass/inner_loss"],
    "combined": ["ce_clip/cmr_loss", "hard_positive/rank_loss", "clear_glass/inner_loss"],
}


@pytest.mark.parametrize("method", sorted(EXPECTED_TERMS))
def test_method_trains_and_logs_every_term(generated, tmp_path, method):
    base, _ = generated
    p = run_params(base, tmp_path, epochs=1)
    summary = train(p, method)
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    run = mlflow.get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["method"] == method
    for term in EXPECTED_TERMS[method]:
        history = mlflow.MlflowClient().get_metric_history(summary["run_id"], term)
        assert [m.step for m in history] == list(range(1, summary["steps"] + 1)), term
        assert all(math.isfinite(m.value) for m in history), term
    # it learns: the total loss falls from its first steps to its last (a loss that never falls, or a
    # method that silently trains nothing, fails here)
    total = [m.value for m in sorted(mlflow.MlflowClient().get_metric_history(summary["run_id"], "loss"),
                                     key=lambda m: m.step)]
    assert all(math.isfinite(v) for v in total)
    assert sum(total[-3:]) / 3 < 0.97 * sum(total[:3]) / 3, total
    assert Path(summary["model"]).is_file()


def test_a_non_finite_loss_stops_the_run_failed_with_the_step(generated, tmp_path, monkeypatch):
    import compclip.training.trainer as trainer_module

    base, _ = generated
    p = run_params(base, tmp_path, epochs=1)
    real = trainer_module.forward_backward

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {**terms, "negclip/contrastive_loss": torch.tensor(float("nan"))}

    monkeypatch.setattr(trainer_module, "forward_backward", poisoned)
    with pytest.raises(FloatingPointError, match="step 1: loss is nan"):
        train(p, "negclip")
    mlflow.set_tracking_uri(p.mlflow.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[p.mlflow.experiment], filter_string="tags.mlflow.runName = 'train-negclip'",
                              order_by=["start_time DESC"])
    assert runs.iloc[0]["status"] == "FAILED"


def test_ce_clip_resume_after_crash_gives_same_weights_and_thresholds(generated, tmp_path):
    base, _ = generated
    ref_p = run_params(base, tmp_path / "ref")
    ref = train(ref_p, "ce_clip")
    p = run_params(base, tmp_path / "crash")
    crash_at = ref["steps"] // 2 + 3  # mid-epoch, after a checkpoint
    with pytest.raises(KeyboardInterrupt):
        train(p, "ce_clip", stop_after_steps=crash_at)
    resumed = train(p, "ce_clip")
    assert resumed["run_id"] != ref["run_id"]
    a = load_checkpoint(latest_checkpoint(Path(ref_p.train.out_dir) / "ce_clip/checkpoints"))
    b = load_checkpoint(latest_checkpoint(Path(p.train.out_dir) / "ce_clip/checkpoints"))
    assert a["step"] == b["step"] == ref["steps"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["loss"]["terms.ce_clip.thresholds"], b["loss"]["terms.ce_clip.thresholds"])
    # the thresholds did move during the run, so their equality above means something. Read from every
    # step's logged value: each step's threshold is clamped at 0 when its negatives outscore its captions,
    # which on another machine's arithmetic can happen at every kept checkpoint
    mlflow.set_tracking_uri(ref_p.mlflow.tracking_uri)
    client = mlflow.MlflowClient()
    moved = [m.value for key in ref if key.startswith("ce_clip/threshold/")
             for m in client.get_metric_history(ref["run_id"], key) if m.value > 0]
    assert moved, "every logged CE-CLIP threshold is 0"
    assert {k: v for k, v in ref.items() if k.startswith("ce_clip/")} == \
        {k: v for k, v in resumed.items() if k.startswith("ce_clip/")}


# --- gradients: accumulation and DDP against one process on the full batch ------------------------

RECIPE = {"ce_clip": 1.0, "hard_positive": 0.5, "clear_glass": 0.5}
B, K, M, N = 8, 3, 4, 2


def make_batch(ctx: int) -> dict:
    g = torch.Generator().manual_seed(0)
    tok = lambda *shape: torch.randint(1, 400, (*shape, ctx), generator=g)  # noqa: E731
    return {"image": torch.randn(B, 3, 16, 16, generator=g, dtype=torch.float64), "text": tok(B),
            "neg_text": tok(B, K), "neg_mask": torch.rand(B, K, generator=g) > 0.2,
            "pos_text": tok(B), "pos_mask": torch.rand(B, generator=g) > 0.4,
            "group_image": torch.randn(M, N, 3, 16, 16, generator=g, dtype=torch.float64), "group_text": tok(M, N)}


def setup_model():
    torch.manual_seed(0)
    model = create("compclip-micro", None, torch.device("cpu")).model.double()
    loss = build_loss(RECIPE, LossConfig(negative_rules=["swap_nouns", "replace_adj", "replace_noun"]), ["a", "b", "c"]).double()
    loss.terms["ce_clip"].thresholds.fill_(0.5)  # a nonzero CMR margin, as after a first step
    return model, loss


def grads_and_loss(model, loss, batch, **kw):
    model.zero_grad()
    terms = forward_backward(model, loss, batch, **kw)
    return float(sum(terms.values())), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_accumulation_gives_the_full_batch_gradient():
    model, loss = setup_model()
    batch = make_batch(model.context_length)
    full_loss, full = grads_and_loss(model, loss, batch)
    acc_loss, acc = grads_and_loss(model, loss, batch, accum_steps=2)
    assert acc_loss == pytest.approx(full_loss, abs=1e-10)
    assert full.keys() == acc.keys()
    for n in full:
        torch.testing.assert_close(acc[n], full[n], atol=1e-9, rtol=1e-7, msg=n)


def test_default_model_has_batchnorm_and_accumulation_or_cpu_ddp_are_refused(generated, tmp_path):
    """The default tower (compclip-tiny-rn, a ResNet) normalises by batch statistics, so micro-batches would
    not give the full batch's gradient: the trainer refuses, naming the layer, instead of training wrong."""
    from compclip.config import load_params
    from compclip.errors import UserError
    from compclip.models.factory import batchnorm_layers
    from compclip.training.trainer import check_batchnorm
    from tests.conftest import REPO

    default = load_params(REPO / "params.yaml").model.name
    model = create(default).model
    assert batchnorm_layers(model)
    with pytest.raises(UserError, match="accum_steps=2: the model has BatchNorm"):
        check_batchnorm(model, accum_steps=2, world_size=1, device=torch.device("cpu"))
    with pytest.raises(UserError, match="2 processes on cpu: the model has BatchNorm"):
        check_batchnorm(model, accum_steps=1, world_size=2, device=torch.device("cpu"))
    assert check_batchnorm(model, accum_steps=1, world_size=1, device=torch.device("cpu")) is model
    base, _ = generated  # and through the trainer, with the default model
    p = run_params(base, tmp_path, epochs=1, accum_steps=2)
    p = p.model_copy(update={"model": p.model.model_copy(update={"name": default})})
    with pytest.raises(UserError, match="BatchNorm"):
        train(p, "clip")
    # a ViT tower has none: accumulation is allowed there (and exact, test above)
    assert not batchnorm_layers(create("compclip-micro").model)


def _ddp_worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    model, loss = setup_model()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    batch = make_batch(model.context_length)
    b, m = B // world, M // world
    shard = {k: v[rank * (m if k.startswith("group") else b):(rank + 1) * (m if k.startswith("group") else b)]
             for k, v in batch.items()}
    value, grads = grads_and_loss(ddp, loss, shard, rank=rank, world_size=world)
    torch.save({"loss": value, "grads": {k.removeprefix("module."): v for k, v in grads.items()},
                "thresholds": loss.terms["ce_clip"]._next}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    model, loss = setup_model()
    one_loss, one = grads_and_loss(model, loss, make_batch(model.context_length))
    one_thresholds = loss.terms["ce_clip"]._next
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        r = torch.load(tmp_path / f"rank{rank}.pt")
        assert r["loss"] == pytest.approx(one_loss, abs=1e-6)
        torch.testing.assert_close(r["thresholds"], one_thresholds, atol=1e-6, rtol=0)
        assert r["grads"].keys() == one.keys()
        for n in one:
            torch.testing.assert_close(r["grads"][n], one[n], atol=1e-6, rtol=0, msg=n)


def test_init_from_and_max_steps(generated, tmp_path):
    base, _ = generated
    first = train(run_params(base, tmp_path / "a", epochs=1), "clip")
    summary = train(run_params(base, tmp_path / "b", epochs=1, max_steps=4, init_from=Path(first["model"])), "negclip")
    assert summary["steps"] == 4
    # max_steps is not capped by epochs: more than one epoch's steps with epochs: 1
    longer = first["steps"] + 3
    assert train(run_params(base, tmp_path / "e", epochs=1, max_steps=longer), "clip")["steps"] == longer
    # with a vanishing learning rate the fine-tuned weights are the ones it started from
    still = train(run_params(base, tmp_path / "c", epochs=1, max_steps=1, lr=1e-12, init_from=Path(first["model"])),
                  "clip")
    start, end = (load_checkpoint(Path(s["model"]))["model"] for s in (first, still))
    assert all(torch.allclose(start[k].float(), end[k].float(), atol=1e-6) for k in start)
    with pytest.raises(ValueError, match="does not exist"):
        train(run_params(base, tmp_path / "d", init_from=tmp_path / "missing.pt"), "clip")
