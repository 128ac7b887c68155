"""The training loop: one MLflow run, seeded, checkpointed, resumable to the exact same weights."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import mlflow
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from compclip.config import Params, TrainConfig
from compclip.losses import build_loss
from compclip.models.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from compclip.models.factory import create
from compclip.training import distributed, tracking
from compclip.training.data import (BatchPlan, ConceptGroups, StepBatches, TrainingItems, collate, load_split,
                                    negative_texts, positive_texts)
from compclip.training.step import forward_backward
from compclip.training.optim import param_groups, warmup_cosine

log = logging.getLogger(__name__)
MAX_LOGIT_SCALE = math.log(100)
KEEP_CHECKPOINTS = 2


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(p: Params, method: str, data_digests: list[str]) -> str:
    """What a checkpoint must match to be resumed: everything that changes the result."""
    relevant = p.train.model_dump(mode="json", exclude={"out_dir", "resume", "checkpoint_every_steps",
                                                        "num_workers", "threads", "device"})
    blob = json.dumps([relevant, method, p.recipe(method), p.loss.model_dump(mode="json"),
                       p.model.model_dump(mode="json"), p.seed, data_digests], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _autocast(precision: str, device: torch.device):
    if device.type != "cuda" or precision == "fp32":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "amp_bf16" else torch.float16)


@dataclass
class Trainer:
    """The objects one run trains, and how to save and restore them together."""

    model: torch.nn.Module  # unwrapped: its state_dict is the checkpoint's
    wrapped: torch.nn.Module  # what the step calls (DistributedDataParallel when distributed)
    loss_fn: torch.nn.Module  # holds CE-CLIP's thresholds
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    model_name: str
    fingerprint: str
    step: int = 0
    run_id: str | None = None

    def state(self) -> dict:
        return {"model_name": self.model_name, "fingerprint": self.fingerprint, "step": self.step,
                "run_id": self.run_id, "model": self.model.state_dict(), "loss": self.loss_fn.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.loss_fn.load_state_dict(ckpt["loss"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        random.setstate(ckpt["rng"]["python"])
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        self.step, self.run_id = ckpt["step"], ckpt["run_id"]

    def save(self, directory: Path) -> Path:
        path = Path(directory) / f"step_{self.step:08d}.pt"
        save_checkpoint(path, self.state())
        for old in sorted(Path(directory).glob("step_*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        return path


def _find_resume(resume: str | None, ckpt_dir: Path, fp: str) -> dict | None:
    if resume is None:
        return None
    path = latest_checkpoint(ckpt_dir) if resume == "latest" else Path(resume)
    if path is None:
        return None
    ckpt = load_checkpoint(path)
    if ckpt.get("fingerprint") != fp:
        if resume == "latest":
            log.warning("not resuming from %s: it was trained with other params or data; starting fresh", path)
            return None
        raise ValueError(f"{path}: checkpoint was trained with other params or data (fingerprint "
                         f"{ckpt.get('fingerprint')} != {fp}); set train.resume to null or 'latest'")
    log.info("resuming from %s (step %d)", path, ckpt["step"])
    return ckpt


def _training_data(p: Params, needs: set[str], rows, bundle, seed: int):
    """The tables a method reads, tokenized; and their digests for the resume fingerprint."""
    manifest = Path(p.ingest.out_dir) / "manifest.parquet"
    used = [manifest]
    negatives = positives = groups = None
    if "negatives" in needs:
        used.append(Path(p.negatives.out_dir) / "negatives.parquet")
        negatives = negative_texts(used[-1], rows, p.loss.negative_rules)
    if "positives" in needs:
        used.append(Path(p.positives.out_dir) / "positives.parquet")
        positives = positive_texts(used[-1], rows, p.loss.hard_positive.positive_ratio, seed)
    if "groups" in needs:
        concepts = Path(p.concepts.out_dir)
        used += [concepts / f for f in ("memberships.parquet", "groups.parquet", "hard_negatives.parquet")]
        groups = ConceptGroups.load(concepts, rows, seed)
    items = TrainingItems(rows, bundle.preprocess, bundle.tokenizer, negatives, positives)
    return items, groups, [file_digest(f) for f in used]


def _plan(p: Params, needs: set[str], world_size: int) -> BatchPlan:
    cfg, cg = p.train, p.loss.clear_glass
    b = cfg.batch_size if "pairs" in needs else 0
    m = cg.groups_per_batch if "groups" in needs else 0
    for name, count in (("train.batch_size", b), ("loss.clear_glass.groups_per_batch", m)):
        if count % (world_size * cfg.accum_steps):
            raise ValueError(f"params.yaml: {name}={count} must divide by processes × train.accum_steps "
                             f"= {world_size} × {cfg.accum_steps}")
    return BatchPlan(b // world_size, m // world_size, cg.group_size if m else 0)


def _init_weights(model: torch.nn.Module, path: Path, model_name: str) -> str:
    """Start from a compclip checkpoint (e.g. the pretrain stage's CLIP); returns its digest."""
    if not path.exists():
        raise ValueError(f"train.init_from: {path} does not exist (run `dvc repro pretrain` first)")
    ckpt = load_checkpoint(path)
    if ckpt.get("model_name") != model_name:
        raise ValueError(f"train.init_from: {path} holds a {ckpt.get('model_name')!r} model, params ask for {model_name!r}")
    model.load_state_dict(ckpt["model"])
    return file_digest(path)


def train(p: Params, method: str, stop_after_steps: int | None = None, run_name: str | None = None) -> dict:
    """Train `method` (a weighted sum of loss terms, params `methods`) into train.out_dir/<method>/
    {model.pt, checkpoints/, summary.json}; returns the summary. Under torchrun every process runs this.

    stop_after_steps simulates a crash (tests): the loop stops there without finishing the run.
    """
    cfg = p.train
    out_dir = Path(cfg.out_dir) / method
    ckpt_dir = out_dir / "checkpoints"
    recipe = p.recipe(method)
    d, device = distributed.init(resolve_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(p.seed)
    random.seed(p.seed)

    bundle = create(p.model.name, p.model.pretrained, device, str(p.model.cache_dir) if p.model.cache_dir else None)
    model = bundle.model
    loss_fn = build_loss(recipe, p.loss, p.loss.negative_rules).to(device)
    rows = load_split(Path(p.ingest.out_dir) / "manifest.parquet", "train")
    items, groups, digests = _training_data(p, loss_fn.needs, rows, bundle, p.seed)
    plan = _plan(p, loss_fn.needs, d.world_size)
    steps_per_epoch = len(rows) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{p.ingest.out_dir}/manifest.parquet: {len(rows)} training pairs < batch_size {cfg.batch_size}")
    total_steps = min(steps_per_epoch * cfg.epochs, cfg.max_steps or steps_per_epoch * cfg.epochs)
    if cfg.init_from:
        digests.append(_init_weights(model, Path(cfg.init_from), p.model.name))

    wrapped = model
    if d.world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "amp" and device.type == "cuda")
    fp = fingerprint(p, method, digests)
    trainer = Trainer(model, wrapped, loss_fn, optimizer, scheduler, scaler, p.model.name, fp)
    ckpt = _find_resume(cfg.resume, ckpt_dir, fp)
    if ckpt:
        trainer.restore(ckpt)

    started = time.perf_counter()
    tracked = nullcontext(None)
    if d.main:
        experiment_id = tracking.configure(p.mlflow)
        tracked = tracking.tracked_run(experiment_id, run_name or f"train-{method}", trainer.run_id)
    with tracked as run:
        metrics = None
        if d.main:
            if trainer.run_id is None:
                trainer.run_id = run.info.run_id
                mlflow.log_params({"method": method, "recipe": json.dumps(recipe), "model": p.model.name,
                                   "pretrained": p.model.pretrained, "seed": p.seed, "train_pairs": len(rows),
                                   "steps": total_steps, "fingerprint": fp, "world_size": d.world_size,
                                   "loss": json.dumps(p.loss.model_dump(mode="json")),
                                   **cfg.model_dump(mode="json", exclude={"out_dir"})})
            metrics = tracking.MetricBuffer(trainer.run_id)
        model.train()
        progress = tqdm(total=total_steps, initial=trainer.step, desc=f"train {method}", unit="step", disable=not d.main)
        while trainer.step < total_steps:
            epoch, start_batch = divmod(trainer.step, steps_per_epoch)
            if start_batch == 0:
                loss_fn.begin_epoch()
            sampler = StepBatches(len(rows), cfg.batch_size, p.seed, epoch, start_batch, with_pairs=plan.pairs > 0,
                                  groups=groups, groups_per_batch=p.loss.clear_glass.groups_per_batch,
                                  group_size=plan.group_size, rank=d.rank, world_size=d.world_size)
            loader = DataLoader(items, batch_sampler=sampler, collate_fn=partial(collate, plan=plan),
                                num_workers=cfg.num_workers)
            for batch in loader:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                terms = _step(trainer, batch, cfg, device, d)
                trainer.step += 1
                progress.update()
                progress.set_postfix(loss=f"{terms['loss']:.3f}")
                if metrics:
                    metrics.log(terms, trainer.step)
                if trainer.step == stop_after_steps:
                    if metrics:
                        metrics.flush()
                    raise KeyboardInterrupt(f"stopped after {stop_after_steps} steps (simulated crash)")
                last = trainer.step == total_steps  # max_steps can end mid-epoch
                epoch_end = trainer.step % steps_per_epoch == 0
                if d.main and (epoch_end or last or (cfg.checkpoint_every_steps and
                                                     trainer.step % cfg.checkpoint_every_steps == 0)):
                    trainer.save(ckpt_dir)
                if last:
                    break
        progress.close()
        summary = None
        if d.main:
            metrics.flush()
            summary = _finish(trainer, out_dir, bundle.name, method, len(rows), total_steps,
                              time.perf_counter() - started)
    distributed.barrier(d)
    distributed.shutdown(d)
    return summary


def _step(trainer: Trainer, batch: dict, cfg: TrainConfig, device, d: distributed.Dist) -> dict[str, float]:
    model, optimizer = trainer.model, trainer.optimizer
    optimizer.zero_grad(set_to_none=True)
    terms = forward_backward(trainer.wrapped, trainer.loss_fn, batch, accum_steps=cfg.accum_steps, rank=d.rank,
                             world_size=d.world_size, autocast=lambda: _autocast(cfg.precision, device),
                             scale=trainer.scaler.scale)
    if cfg.grad_clip_norm:
        trainer.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    trainer.scaler.step(optimizer)
    trainer.scaler.update()
    trainer.scheduler.step()
    trainer.loss_fn.end_step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return {"loss": sum(terms.values()).item(), **{k: v.item() for k, v in terms.items()},
            "lr": optimizer.param_groups[0]["lr"], "logit_scale": model.logit_scale.exp().item(),
            **trainer.loss_fn.metrics()}


def _finish(trainer: Trainer, out_dir: Path, model_name: str, method: str, pairs: int, steps: int,
            seconds: float) -> dict:
    model_path = out_dir / "model.pt"
    save_checkpoint(model_path, {"model_name": model_name, "model": trainer.model.state_dict(),
                                 "fingerprint": trainer.fingerprint, "step": trainer.step})
    summary = {"run_id": trainer.run_id, "method": method, "model": str(model_path), "model_name": model_name,
               "steps": steps, "train_pairs": pairs, **trainer.loss_fn.metrics()}
    mlflow.log_metric("train_seconds_last_session", seconds)
    mlflow.log_artifact(str(model_path), artifact_path="checkpoint")
    trainer.model.eval()
    mlflow.pytorch.log_model(trainer.model.cpu(), name="model", serialization_format="pickle",
                             metadata={"open_clip_model": model_name},
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "open_clip_torch"])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
