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
from pathlib import Path

import mlflow
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from compclip.config import MlflowConfig, ModelConfig, TrainConfig
from compclip.losses import build_loss
from compclip.models.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from compclip.models.factory import create
from compclip.training import tracking
from compclip.training.data import EpochBatches, PairDataset, load_split
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


def fingerprint(train: TrainConfig, model: ModelConfig, seed: int, manifest_digest: str) -> str:
    """What a checkpoint must match to be resumed: everything that changes the result."""
    relevant = train.model_dump(mode="json", exclude={"out_dir", "resume", "checkpoint_every_steps",
                                                      "num_workers", "threads", "device"})
    blob = json.dumps([relevant, model.model_dump(mode="json"), seed, manifest_digest], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _autocast(precision: str, device: torch.device):
    if device.type != "cuda" or precision == "fp32":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "amp_bf16" else torch.float16)


@dataclass
class Trainer:
    """The objects one run trains, and how to save and restore them together."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    model_name: str
    fingerprint: str
    step: int = 0
    run_id: str | None = None

    def state(self) -> dict:
        return {"model_name": self.model_name, "fingerprint": self.fingerprint, "step": self.step,
                "run_id": self.run_id, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
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


def train(train_cfg: TrainConfig, model_cfg: ModelConfig, mlflow_cfg: MlflowConfig, manifest: Path, seed: int,
          stop_after_steps: int | None = None) -> dict:
    """Train and write out_dir/{model.pt, checkpoints/, summary.json}; returns the summary.

    stop_after_steps simulates a crash (tests): the loop stops there without finishing the run.
    """
    out_dir = Path(train_cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    device = resolve_device(train_cfg.device)
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    torch.manual_seed(seed)
    random.seed(seed)

    bundle = create(model_cfg.name, model_cfg.pretrained, device,
                    str(model_cfg.cache_dir) if model_cfg.cache_dir else None)
    model = bundle.model
    rows = load_split(manifest, "train")
    data = PairDataset(rows, bundle.preprocess, bundle.tokenizer)
    steps_per_epoch = len(data) // train_cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{manifest}: {len(data)} training pairs < batch_size {train_cfg.batch_size}")
    total_steps = steps_per_epoch * train_cfg.epochs

    optimizer = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.lr,
                                  betas=(train_cfg.beta1, train_cfg.beta2), eps=train_cfg.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(train_cfg.warmup_steps, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=train_cfg.precision == "amp" and device.type == "cuda")
    fp = fingerprint(train_cfg, model_cfg, seed, file_digest(manifest))
    trainer = Trainer(model, optimizer, scheduler, scaler, model_cfg.name, fp)
    ckpt = _find_resume(train_cfg.resume, ckpt_dir, fp)
    if ckpt:
        trainer.restore(ckpt)
    loss_fn = build_loss(train_cfg.method)

    experiment_id = tracking.configure(mlflow_cfg)
    started = time.perf_counter()
    with tracking.tracked_run(experiment_id, f"train-{train_cfg.method}", trainer.run_id) as run:
        if trainer.run_id is None:
            trainer.run_id = run.info.run_id
            mlflow.log_params({"method": train_cfg.method, "model": model_cfg.name, "pretrained": model_cfg.pretrained,
                               "seed": seed, "train_pairs": len(data), "steps": total_steps, "fingerprint": fp,
                               **train_cfg.model_dump(mode="json", exclude={"method", "out_dir"})})
        metrics = tracking.MetricBuffer(trainer.run_id)
        model.train()
        progress = tqdm(total=total_steps, initial=trainer.step, desc=f"train {train_cfg.method}", unit="step")
        while trainer.step < total_steps:
            epoch, start_batch = divmod(trainer.step, steps_per_epoch)
            loader = DataLoader(data, batch_sampler=EpochBatches(len(data), train_cfg.batch_size, seed, epoch,
                                                                 start_batch), num_workers=train_cfg.num_workers)
            for images, texts in loader:
                terms = _step(trainer, loss_fn, images.to(device), texts.to(device), train_cfg, device)
                trainer.step += 1
                progress.update()
                progress.set_postfix(loss=f"{terms['loss']:.3f}")
                metrics.log(terms, trainer.step)
                if trainer.step == stop_after_steps:
                    metrics.flush()
                    raise KeyboardInterrupt(f"stopped after {stop_after_steps} steps (simulated crash)")
                epoch_end = trainer.step % steps_per_epoch == 0
                if epoch_end or (train_cfg.checkpoint_every_steps and
                                 trainer.step % train_cfg.checkpoint_every_steps == 0):
                    trainer.save(ckpt_dir)
        progress.close()
        metrics.flush()
        summary = _finish(trainer, out_dir, bundle.name, len(data), total_steps, time.perf_counter() - started)
    return summary


def _step(trainer: Trainer, loss_fn, images, texts, cfg: TrainConfig, device) -> dict[str, float]:
    model, optimizer = trainer.model, trainer.optimizer
    optimizer.zero_grad(set_to_none=True)
    with _autocast(cfg.precision, device):
        out = model(images, texts)
        losses = loss_fn(out["image_features"], out["text_features"], out["logit_scale"], output_dict=True)
        total = sum(losses.values())
    trainer.scaler.scale(total).backward()
    if cfg.grad_clip_norm:
        trainer.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    trainer.scaler.step(optimizer)
    trainer.scaler.update()
    trainer.scheduler.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return {"loss": total.item(), **{k: v.item() for k, v in losses.items()},
            "lr": optimizer.param_groups[0]["lr"], "logit_scale": model.logit_scale.exp().item()}


def _finish(trainer: Trainer, out_dir: Path, model_name: str, pairs: int, steps: int, seconds: float) -> dict:
    model_path = out_dir / "model.pt"
    save_checkpoint(model_path, {"model_name": model_name, "model": trainer.model.state_dict(),
                                 "fingerprint": trainer.fingerprint, "step": trainer.step})
    summary = {"run_id": trainer.run_id, "model": str(model_path), "model_name": model_name, "steps": steps,
               "train_pairs": pairs}
    mlflow.log_metric("train_seconds_last_session", seconds)
    mlflow.log_artifact(str(model_path), artifact_path="checkpoint")
    trainer.model.eval()
    mlflow.pytorch.log_model(trainer.model.cpu(), name="model", serialization_format="pickle",
                             metadata={"open_clip_model": model_name},
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "open_clip_torch"])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
