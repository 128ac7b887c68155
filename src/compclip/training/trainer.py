"""The training loop: one MLflow run, seeded, checkpointed, resumable to the exact same weights."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from compclip import tracking
from compclip.config import EXECUTION_ONLY, Params, TrainConfig
from compclip.data.manifest import load_split
from compclip.errors import UserError
from compclip.losses import build_loss, settings
from compclip.models.checkpoint import checkpoints_newest_first, load_checkpoint, save_checkpoint
from compclip.models.factory import batchnorm_layers, create, resolve_device
from compclip.training import distributed
from compclip.training.data import (BatchPlan, ConceptGroups, StepBatches, TrainingItems, collate, fit_to_context,
                                    negative_texts, positive_texts, shared_images)
from compclip.training.optim import adamw, param_groups, warmup_cosine
from compclip.training.step import forward_backward

log = logging.getLogger(__name__)
MAX_LOGIT_SCALE = math.log(100)
KEEP_CHECKPOINTS = 2


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(p: Params, cfg: TrainConfig, method: str, recipe: dict[str, float], data_digests: list[str]) -> str:
    """What a checkpoint must match to be resumed: everything that changes the result (the device does
    not forbid a resume: a run may move from one GPU to another)."""
    # use_tuned acts through the loss and lr values it merged in, which are part of the fingerprint already
    relevant = cfg.model_dump(mode="json", exclude={"out_dir", "device", "use_tuned", *EXECUTION_ONLY})
    blob = json.dumps([relevant, method, recipe, settings(recipe, p.loss), p.model.model_dump(mode="json"),
                       p.seed, data_digests], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def total_steps(cfg: TrainConfig, pairs: int) -> tuple[int, int]:
    """(steps per epoch, steps to train): max_steps when set (as many epochs as that takes), else epochs."""
    steps_per_epoch = pairs // cfg.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{pairs} training pairs < batch_size {cfg.batch_size}")
    return steps_per_epoch, cfg.max_steps or steps_per_epoch * cfg.epochs


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    # amp_bf16 on CPU too (bf16 kernels where the CPU has them); fp16 `amp` is CUDA's, refused elsewhere (check_precision)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "amp_bf16" else torch.float16)


def check_precision(precision: str, device: torch.device, key: str = "train.precision") -> None:
    """fp16 autocast with a GradScaler is CUDA's mixed precision; elsewhere it would run as fp32 unnoticed."""
    if precision == "amp" and device.type != "cuda":
        raise UserError(f"{key}: amp (fp16 with a GradScaler) needs CUDA, and this run is on {device.type}; "
                        "use amp_bf16 (bf16 autocast, on CPU too) or fp32")


def check_batchnorm(model: torch.nn.Module, accum_steps: int, world_size: int, device: torch.device) -> torch.nn.Module:
    """BatchNorm normalises by the statistics of what one forward sees, so micro-batches (and the cached
    no-grad pass that updates running statistics) would not give the full batch's gradient: refused.
    Under DDP on CUDA it becomes SyncBatchNorm (statistics of the global batch); on CPU it is refused."""
    layers = batchnorm_layers(model)
    if not layers:
        return model
    if accum_steps > 1:
        raise UserError(f"train.accum_steps={accum_steps}: the model has BatchNorm ({layers[0]}, ... "
                        f"{len(layers)} layers), whose statistics depend on the micro-batch, so accumulation "
                        "would not give the full batch's gradient. Use accum_steps: 1 or a model without "
                        "BatchNorm (compclip-tiny, any ViT)")
    if world_size > 1:
        if device.type != "cuda":
            raise UserError(f"{world_size} processes on {device.type}: the model has BatchNorm, which would "
                            "see per-process statistics, and SyncBatchNorm needs CUDA. Train on one process "
                            "or use a model without BatchNorm (compclip-tiny, any ViT)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


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
    if resume != "latest":
        ckpt = load_checkpoint(Path(resume))
        if ckpt.get("fingerprint") != fp:
            raise UserError(f"{resume}: checkpoint was trained with other params or data (fingerprint "
                            f"{ckpt.get('fingerprint')} != {fp}); set train.resume to null or 'latest'")
        return ckpt
    for path in checkpoints_newest_first(ckpt_dir):
        try:
            ckpt = load_checkpoint(path)
        except ValueError as e:  # cut off by a crash mid-write on a filesystem without atomic rename, or damaged
            log.warning("skipping unreadable checkpoint %s (%s); trying the previous one", path, e)
            continue
        if ckpt.get("fingerprint") != fp:
            log.warning("not resuming from %s: it was trained with other params or data; starting fresh", path)
            return None
        log.info("resuming from %s (step %d)", path, ckpt["step"])
        return ckpt
    return None


def training_files(p: Params, needs: set[str]) -> dict[str, list[Path]]:
    """The tables a loss with these needs reads: the manifest, and negatives / positives / concept groups."""
    concepts = Path(p.concepts.out_dir) if "groups" in needs else None
    files = {"manifest": [Path(p.ingest.out_dir) / "manifest.parquet"],
             "negatives": [Path(p.negatives.out_dir) / "negatives.parquet"] if "negatives" in needs else [],
             "positives": [Path(p.positives.out_dir) / "positives.parquet"] if "positives" in needs else [],
             "groups": [concepts / f for f in ("memberships.parquet", "groups.parquet", "hard_negatives.parquet")]
             if concepts else []}
    return files


def _training_data(p: Params, cfg: TrainConfig, needs: set[str], rows, bundle, seed: int):
    """The tables a method reads, fitted to the text context and tokenized; their digests for the resume
    fingerprint; and how many texts were over the context."""
    files = training_files(p, needs)
    negatives = positives = groups = None
    if files["negatives"]:
        negatives = negative_texts(files["negatives"][0], rows, p.loss.negative_rules)
    if files["positives"]:
        positives = positive_texts(files["positives"][0], rows, p.loss.hard_positive.positive_ratio, seed)
    rows, negatives, positives, context = fit_to_context(bundle.tokenizer, rows, negatives, positives,
                                                         cfg.long_captions)
    if files["groups"]:
        groups = ConceptGroups.load(files["groups"][0].parent, rows, seed)
    items = TrainingItems(rows, bundle.preprocess, bundle.tokenizer, negatives, positives,
                          shared_images(cfg.image_cache_mb))
    return rows, items, groups, [file_digest(f) for f in sum(files.values(), [])], context


def _plan(cfg: TrainConfig, p: Params, needs: set[str], world_size: int) -> BatchPlan:
    b = cfg.batch_size if "pairs" in needs else 0
    m = p.loss.clear_glass.groups_per_batch if "groups" in needs else 0
    for name, count in (("train.batch_size", b), ("loss.clear_glass.groups_per_batch", m)):
        if count % (world_size * cfg.accum_steps):
            raise UserError(f"params.yaml: {name}={count} must divide by processes × train.accum_steps "
                            f"= {world_size} × {cfg.accum_steps}")
    return BatchPlan(b // world_size, m // world_size, p.loss.clear_glass.group_size if m else 0)


def _init_weights(model: torch.nn.Module, path: Path, model_name: str) -> str:
    """Start from a compclip checkpoint (e.g. the pretrain stage's CLIP); returns its digest."""
    if not path.exists():
        raise UserError(f"train.init_from: {path} does not exist (run `dvc repro pretrain` first)")
    ckpt = load_checkpoint(path)
    if ckpt.get("model_name") != model_name:
        raise UserError(f"train.init_from: {path} holds a {ckpt.get('model_name')!r} model, params ask for {model_name!r}")
    model.load_state_dict(ckpt["model"])
    return file_digest(path)


def train(p: Params, method: str, cfg: TrainConfig | None = None, stop_after_steps: int | None = None,
          run_name: str | None = None, recipe: dict[str, float] | None = None,
          on_step: Callable[[int, torch.nn.Module], None] | None = None) -> dict:
    """Train `method` (a weighted sum of loss terms, params `methods`) with `cfg` (default params `train`;
    the pretrain stage passes `pretrain`) into cfg.out_dir/<method>/{model.pt, checkpoints/, summary.json};
    returns the summary. Under torchrun every process runs this. `recipe` replaces params' methods[method]
    (pretraining is plain CLIP whatever the methods are).

    stop_after_steps simulates a crash (tests): the loop stops there without finishing the run.
    on_step(step, model) runs on the main process after each optimiser step (tuning scores the model there
    and may raise to stop the run); it must leave the model in training mode and must not draw random numbers.
    """
    cfg = cfg or p.train
    out_dir = Path(cfg.out_dir) / method
    ckpt_dir = out_dir / "checkpoints"
    recipe = recipe or p.recipe(method)
    d, device = distributed.init(resolve_device(cfg.device))
    check_precision(cfg.precision, device, "pretrain.precision" if cfg is p.pretrain else "train.precision")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(p.seed)
    random.seed(p.seed)

    bundle = create(p.model.name, p.model.pretrained, device, str(p.model.cache_dir) if p.model.cache_dir else None)
    loss_fn = build_loss(recipe, p.loss).to(device)
    rows = load_split(Path(p.ingest.out_dir) / "manifest.parquet", "train")
    rows, items, groups, digests, context = _training_data(p, cfg, loss_fn.needs, rows, bundle, p.seed)
    if context["captions_over"] + context["negatives_over"] + context["positives_over"]:
        log.warning("texts longer than the model's context of %d tokens: %d captions, %d negatives, %d positives "
                    "(train.long_captions=%s)", context["context_length"], context["captions_over"],
                    context["negatives_over"], context["positives_over"], cfg.long_captions)
    plan = _plan(cfg, p, loss_fn.needs, d.world_size)
    try:
        steps_per_epoch, steps = total_steps(cfg, len(rows))
    except ValueError as e:
        raise UserError(f"{p.ingest.out_dir}/manifest.parquet: {e}") from None
    if cfg.init_from:
        digests.append(_init_weights(bundle.model, Path(cfg.init_from), p.model.name))
    model = check_batchnorm(bundle.model, cfg.accum_steps, d.world_size, device)

    wrapped = model
    if d.world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = adamw(param_groups(model, cfg.weight_decay), cfg, device, model, d.world_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, steps))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "amp" and device.type == "cuda")
    fp = fingerprint(p, cfg, method, recipe, digests)
    trainer = Trainer(model, wrapped, loss_fn, optimizer, scheduler, scaler, p.model.name, fp)
    ckpt = _find_resume(cfg.resume, ckpt_dir, fp)
    if ckpt:
        trainer.restore(ckpt)

    started = time.perf_counter()
    with tracking.run(p.mlflow, run_name or f"train-{method}", trainer.run_id, active=d.main) as run:
        if trainer.run_id is None and run.run_id is not None:
            trainer.run_id = run.run_id
            run.log_params({"method": method, "recipe": json.dumps(recipe), "model": p.model.name,
                            "pretrained": p.model.pretrained, "seed": p.seed, "train_pairs": len(rows),
                            "steps": steps, "fingerprint": fp, "world_size": d.world_size,
                            "loss": json.dumps(settings(recipe, p.loss)),
                            "contrastive_weight": loss_fn.contrastive_weight,
                            **cfg.model_dump(mode="json", exclude={"out_dir", "use_tuned"})})
            run.log_metrics({f"context_{k}": v for k, v in context.items() if isinstance(v, int)})
        model.train()
        progress = tqdm(total=steps, initial=trainer.step, desc=f"train {method}", unit="step", disable=not d.main)
        while trainer.step < steps:
            epoch, start_batch = divmod(trainer.step, steps_per_epoch)
            if start_batch == 0:
                loss_fn.begin_epoch()
            sampler = StepBatches(len(rows), cfg.batch_size, p.seed, epoch, start_batch, with_pairs=plan.pairs > 0,
                                  groups=groups, groups_per_batch=plan.groups * d.world_size,
                                  group_size=plan.group_size, rank=d.rank, world_size=d.world_size)
            loader = DataLoader(items, batch_sampler=sampler, collate_fn=partial(collate, plan=plan),
                                num_workers=cfg.num_workers)
            for batch in loader:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                terms = _step(trainer, batch, cfg, device, d)
                trainer.step += 1
                progress.update()
                progress.set_postfix(loss=f"{terms['loss']:.3f}")
                run.log_step(terms, trainer.step)
                if on_step is not None and d.main:
                    on_step(trainer.step, model)
                if trainer.step == stop_after_steps:
                    raise KeyboardInterrupt(f"stopped after {stop_after_steps} steps (simulated crash)")
                last = trainer.step == steps  # max_steps can end mid-epoch
                epoch_end = trainer.step % steps_per_epoch == 0
                if d.main and (epoch_end or last or (cfg.checkpoint_every_steps and
                                                     trainer.step % cfg.checkpoint_every_steps == 0)):
                    trainer.save(ckpt_dir)
                if last:
                    break
        progress.close()
        summary = None
        if d.main:
            # what the comparison table prints beside each method: its budget and its negatives
            setup = {"recipe": recipe, "batch_size": cfg.batch_size,
                     "negative_rules": list(p.loss.negative_rules) if "negatives" in loss_fn.needs else []}
            summary = _finish(trainer, run, out_dir, bundle.name, method, len(rows), steps,
                              time.perf_counter() - started, f"{device}" + (f" x{d.world_size}" if d.world_size > 1 else ""),
                              context, setup)
    distributed.barrier(d)
    distributed.shutdown(d)
    return summary


def _step(trainer: Trainer, batch: dict, cfg: TrainConfig, device, d: distributed.Dist) -> dict[str, float]:
    model, optimizer = trainer.model, trainer.optimizer
    optimizer.zero_grad(set_to_none=True)
    terms = forward_backward(trainer.wrapped, trainer.loss_fn, batch, accum_steps=cfg.accum_steps, rank=d.rank,
                             world_size=d.world_size, autocast=lambda: _autocast(cfg.precision, device),
                             scale=trainer.scaler.scale, skip_invalid=trainer.loss_fn.skips_invalid)
    loss = sum(terms.values())
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {trainer.step + 1}: loss is {loss.item()} "
                                 f"({ {k: round(v.item(), 4) for k, v in terms.items()} }); lower train.lr, "
                                 "use precision fp32, or check the data")
    if cfg.grad_clip_norm:
        trainer.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    trainer.scaler.step(optimizer)
    trainer.scaler.update()
    trainer.scheduler.step()
    trainer.loss_fn.end_step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
            "lr": optimizer.param_groups[0]["lr"], "logit_scale": model.logit_scale.exp().item(),
            **trainer.loss_fn.metrics()}


def _finish(trainer: Trainer, run: tracking.NullRun, out_dir: Path, model_name: str, method: str, pairs: int,
            steps: int, seconds: float, device: str, context: dict, setup: dict) -> dict:
    model_path = out_dir / "model.pt"
    save_checkpoint(model_path, {"model_name": model_name, "model": trainer.model.state_dict(),
                                 "fingerprint": trainer.fingerprint, "step": trainer.step})
    summary = {"run_id": trainer.run_id, "method": method, "model": str(model_path), "model_name": model_name,
               "steps": steps, "train_pairs": pairs, "device": device, "over_context": context, **setup,
               **trainer.loss_fn.metrics()}
    run.log_metrics({"train_seconds_last_session": seconds})
    run.log_artifact(model_path, artifact_path="checkpoint")
    trainer.model.eval()
    run.log_model(trainer.model, model_name)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
