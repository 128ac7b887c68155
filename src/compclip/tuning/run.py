"""The tune step: one study per method of tune.methods, run by one or several worker processes, then the
outputs (best_params.yaml, trials.csv, plots, summary.json) and the study's MLflow run."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

import torch

from compclip import tracking
from compclip.config import EXECUTION_ONLY, TRACE_ENV, Params
from compclip.errors import UserError
from compclip.losses import build_loss, settings
from compclip.models.factory import resolve_device
from compclip.provenance import provenance
from compclip.training.trainer import file_digest, training_files
from compclip.tuning import report
from compclip.tuning.objective import TRIAL_INHERITS, Objective, make_scorer, reference_scores, starting_model
from compclip.tuning.space import for_recipe
from compclip.tuning.study import make_storage, open_study, optimize, storage_url, study_name

log = logging.getLogger(__name__)


def identity(p: Params, method: str) -> dict:
    """Everything that changes what a trial of `method` computes (not n_trials: raising it continues)."""
    recipe = p.recipe(method)
    files = sum(training_files(p, build_loss(recipe, p.loss).needs).values(), [])
    if p.train.init_from:
        files.append(Path(p.train.init_from))
    t = p.tune
    return {"method": method, "recipe": recipe, "loss": settings(recipe, p.loss), "seed": p.seed,
            "model": [p.model.name, p.model.pretrained],
            "space": {k: v.model_dump() for k, v in for_recipe(t.space, recipe).items()},
            "budget": [t.max_steps, t.eval_every, t.max_r1_drop, t.pruner, t.pruner_startup_trials,
                       t.pruner_warmup_steps] + ([] if t.r1_reference == "start" else [t.r1_reference]),
            # the validation benchmark by content: new val files must not resume a study scored on the old ones
            "val": {f.name: file_digest(f) for f in sorted(Path(t.val.data).glob("*.json"))},
            "train": {k: str(getattr(p.train, k)) for k in TRIAL_INHERITS if k not in EXECUTION_ONLY},
            "data": {str(f): file_digest(f) for f in files}}


SCORES = ("compositional", "r1", "i2t_R@1", "t2i_R@1", "n", "r1_n")  # n: items per validation file


def _prepare(p: Params, method: str, url: str, params: Params) -> tuple[str, dict, str | None]:
    """Create (or load) the method's study (p: params as `method` trains); its baseline scores (the starting
    model's and, under tune.r1_reference, the reference method's) and MLflow parent run live in the study."""
    t = p.tune
    name = study_name(method, identity(p, method))
    study = open_study(name, make_storage(url, t.heartbeat_interval, t.grace_period), t, p.seed)
    if "baseline" not in study.user_attrs:
        device = resolve_device(p.train.device)
        start = starting_model(p, device)
        scores = make_scorer(p, start, device)(start.model)
        baseline = {"reference": "start", **{k: scores[k] for k in SCORES}}
        log.info("%s: starting model on val: compositional %.4f, R@1 %.4f", name, scores["compositional"], scores["r1"])
        if t.r1_reference != "start":
            ref = reference_scores(params, t.r1_reference, device)
            baseline = {"reference": t.r1_reference, **{k: ref[k] for k in SCORES},
                        "start": {k: scores[k] for k in SCORES}}
            log.info("%s: %s after %d steps on val: compositional %.4f, R@1 %.4f (the R@1 reference)", name,
                     t.r1_reference, t.max_steps, ref["compositional"], ref["r1"])
        study.set_user_attr("baseline", baseline)
    if "mlflow_run_id" not in study.user_attrs:
        run_id = tracking.create_run(p.mlflow, f"tune-{method}", tags={"optuna.study": name, "method": method})
        if run_id:
            study.set_user_attr("mlflow_run_id", run_id)
    return name, study.user_attrs["baseline"], study.user_attrs.get("mlflow_run_id")


def work(p: Params, method: str, name: str, url: str, threads: int | None = None, shared: bool = False) -> None:
    """One worker: run trials of the named study until it has its count. Workers sharing a study draw from
    their own sampler seeds (the process id mixed in), or they would all start with the same values; a
    shared study is not reproducible trial by trial anyway."""
    if threads:
        torch.set_num_threads(threads)
    t = p.tune
    seed = p.seed + (os.getpid() if shared else 0)
    study = open_study(name, make_storage(url, t.heartbeat_interval, t.grace_period), t, seed)
    objective = Objective(p, method, study.user_attrs["baseline"], study.user_attrs.get("mlflow_run_id"))
    optimize(study, objective, t.n_trials, t.max_failed_trials)


def _spawn(p: Params, method: str, name: str, url: str, workers: int) -> None:
    ctx = multiprocessing.get_context("spawn")  # no forked torch/sqlite state
    threads = max(1, (os.cpu_count() or 1) // workers)
    env_trace = os.environ.pop(TRACE_ENV, None)  # workers read what this process already declared
    try:
        procs = [ctx.Process(target=work, args=(p, method, name, url, threads, True), name=f"tune-worker-{i}")
                 for i in range(workers)]
        for proc in procs:
            proc.start()
    finally:
        if env_trace is not None:
            os.environ[TRACE_ENV] = env_trace
    for proc in procs:
        proc.join()
    if bad := [f"{proc.name} exit {proc.exitcode}" for proc in procs if proc.exitcode]:
        log.warning("tune workers ended badly: %s (their running trials will be retried on resume)", bad)


def _note_storage(folder: Path, url: str) -> None:
    """The study folder (a DVC out) always exists and says where the study lives (password hidden)."""
    from sqlalchemy.engine import make_url

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "storage.txt").write_text(make_url(url).render_as_string(hide_password=True) + "\n")


def tune(p: Params, workers: int | None = None, storage: str | None = None) -> dict:
    """Run every study of params `tune` and write its outputs; returns the summary."""
    if p.tune is None:
        raise UserError("params.yaml has no `tune` section")
    t = p.tune
    url = storage or storage_url(t)
    workers = workers or t.workers
    _note_storage(Path(t.out_dir) / "study", url)
    studies = {}
    for method in t.methods:
        q = p.for_method(method)  # trials start from the method's own settings (method_overrides)
        name, baseline, _ = _prepare(q, method, url, p)
        if workers == 1:  # an explicit storage may be shared with workers started elsewhere
            work(q, method, name, url, shared=storage is not None or t.storage is not None)
        else:
            _spawn(q, method, name, url, workers)
        studies[method] = name
    loaded = {m: open_study(n, make_storage(url, t.heartbeat_interval, t.grace_period), t, p.seed)
              for m, n in studies.items()}
    record = provenance({"seed": p.seed, "tune": t.model_dump(mode="json")}, str(resolve_device(p.train.device)))
    return report.write(loaded, t, p.mlflow, record)
