"""One trial: train the tuned method from the starting model for tune.max_steps with the suggested values,
report the validation compositional accuracy every tune.eval_every steps (the pruner's input), and return
the final one, with the retrieval R@1 drop below the study's reference (tune.r1_reference) as a constraint."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import optuna
import torch

from compclip import tracking
from compclip.config import Params, TrainConfig, TuneConfig, override
from compclip.data.manifest import load_split
from compclip.models.checkpoint import load_checkpoint
from compclip.models.factory import ClipBundle, create, resolve_device
from compclip.training.trainer import train
from compclip.tuning.scoring import ValidationScorer
from compclip.tuning.space import for_recipe, split_values, suggest

# What a trial takes from params.yaml `train` (the tuned train.* keys replace theirs); its budget, output
# folder and checkpointing are the tune stage's own.
TRIAL_INHERITS = ("init_from", "batch_size", "accum_steps", "lr", "weight_decay", "beta1", "beta2", "eps",
                  "warmup_steps", "grad_clip_norm", "precision", "device", "long_captions", "num_workers", "threads",
                  "image_cache_mb")


def trial_config(train_cfg: TrainConfig, tune: TuneConfig, out_dir: Path, train_values: dict) -> TrainConfig:
    inherited = {k: getattr(train_cfg, k) for k in TRIAL_INHERITS}
    return TrainConfig(**{**inherited, **train_values}, out_dir=out_dir, epochs=1, max_steps=tune.max_steps,
                       checkpoint_every_steps=0, resume=None)


def starting_model(p: Params, device: torch.device) -> ClipBundle:
    """The model every trial starts from: train.init_from (the pretrain stage's CLIP) or model.pretrained
    (seeded as the trainer seeds, so a randomly initialised start is the trials' start too)."""
    torch.manual_seed(p.seed)
    bundle = create(p.model.name, p.model.pretrained, device, str(p.model.cache_dir) if p.model.cache_dir else None)
    if p.train.init_from:
        bundle.model.load_state_dict(load_checkpoint(Path(p.train.init_from))["model"])
    return bundle


def make_scorer(p: Params, bundle: ClipBundle, device: torch.device) -> ValidationScorer:
    val_rows = load_split(Path(p.ingest.out_dir) / "manifest.parquet", "val")
    return ValidationScorer(p.tune.val, val_rows, bundle, device, p.evaluate.batch_size)


def reference_scores(p: Params, reference: str, device: torch.device) -> dict:
    """Validation scores of the method `reference` fine-tuned from the starting model for tune.max_steps, as a
    trial trains but with params.yaml's values (tune.r1_reference): fine-tuning first dips in R@1, so against
    the starting model every short trial would be infeasible; against this, the constraint is what the tuned
    loss costs beyond what fine-tuning costs."""
    q = override(p.for_method(reference), {"mlflow.enabled": False})
    scorer = make_scorer(q, create(q.model.name, None, "cpu"), device)
    scores: dict = {}

    def on_step(step: int, model: torch.nn.Module) -> None:
        if step == q.tune.max_steps:
            scores.update(scorer(model))

    with tempfile.TemporaryDirectory(prefix="compclip-reference-") as work:
        train(q, reference, trial_config(q.train, q.tune, Path(work), {}), run_name=f"tune-reference-{reference}",
              on_step=on_step)
    return scores


class Objective:
    """Callable by Optuna. `baseline` holds the validation scores of the R@1 reference (tune.r1_reference)."""

    def __init__(self, p: Params, method: str, baseline: dict, parent_run_id: str | None):
        self.p, self.method, self.baseline, self.parent_run_id = p, method, baseline, parent_run_id
        self.tune = p.tune
        self.space = for_recipe(p.tune.space, p.recipe(method))
        self.device = resolve_device(p.train.device)
        self.scorer = make_scorer(p, create(p.model.name, None, "cpu"), self.device)

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            value = self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:  # the study goes on; the reason stays with the trial
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:1000])
            raise
        if not math.isfinite(value):
            trial.set_user_attr("fail_reason", f"objective is {value}")
        return value

    def _run(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.space)
        loss_values, train_values = split_values(values)
        # trials are tracked as nested runs of the study's run, not as training runs of their own
        p = override(self.p, {**loss_values, "mlflow.enabled": False})
        final: dict = {}

        with tracking.client_run(self.p.mlflow, f"{self.method}-trial-{trial.number}", self.parent_run_id,
                                 tags={"optuna.trial": str(trial.number), "method": self.method}) as run, \
                tempfile.TemporaryDirectory(prefix="compclip-trial-") as work:
            run.log_params({"trial": trial.number, **values})

            def on_step(step: int, model: torch.nn.Module) -> None:
                if step % self.tune.eval_every and step != self.tune.max_steps:
                    return
                scores = self.scorer(model)
                run.log_metrics({"val_compositional": scores["compositional"], "val_r1": scores["r1"]}, step)
                if step == self.tune.max_steps:
                    final.update(scores)
                    return
                trial.report(scores["compositional"], step)
                if trial.should_prune():
                    run.end_status = "KILLED"
                    run.set_tags({"optuna.state": "PRUNED"})
                    raise optuna.TrialPruned(f"step {step}: val compositional {scores['compositional']:.4f}")

            cfg = trial_config(self.p.train, self.tune, Path(work), train_values)
            try:
                train(p, self.method, cfg, run_name=f"tune-{self.method}-{trial.number}", on_step=on_step)
            except optuna.TrialPruned:
                raise
            except Exception as e:  # the nested run says why too (it ends FAILED)
                run.set_tags({"optuna.state": "FAIL", "fail_reason": f"{type(e).__name__}: {e}"[:1000]})
                raise
            value = final["compositional"]
            r1_drop = self.baseline["r1"] - final["r1"]
            trial.set_user_attr("val_r1", final["r1"])
            trial.set_user_attr("r1_drop", r1_drop)
            trial.set_user_attr("val_files", final["files"])
            trial.set_constraint("r1_drop", r1_drop - self.tune.max_r1_drop)  # feasible when <= 0
            run.log_metrics({"val_compositional": value, "val_r1": final["r1"], "r1_drop": r1_drop},
                            self.tune.max_steps)
            run.set_tags({"optuna.state": "COMPLETE" if math.isfinite(value) else "FAIL",
                          "feasible": str(r1_drop <= self.tune.max_r1_drop)}
                         | ({} if math.isfinite(value) else {"fail_reason": f"objective is {value}"}))
            if not math.isfinite(value):
                run.end_status = "FAILED"
            return value
