"""A study's outputs: best_params.yaml (what `train.use_tuned` merges), trials.csv, plots, summary.json,
all also logged to the study's MLflow run."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

from compclip import tracking
from compclip.config import MlflowConfig, TuneConfig
from compclip.errors import UserError
from compclip.tuning.study import counts

log = logging.getLogger(__name__)
PLOTS = {"history": "plot_optimization_history", "importances": "plot_param_importances",
         "parallel": "plot_parallel_coordinate"}


def best(study: optuna.Study) -> dict:
    """The best feasible COMPLETE trial (Optuna leaves infeasible ones out), or why there is none."""
    try:
        trial = study.best_trial
    except ValueError as e:  # no completed trial, or none feasible
        return {"study": study.study_name, "status": str(e), "params": {}}
    return {"study": study.study_name, "status": "ok", "trial": trial.number, "value": trial.value,
            "val_r1": trial.user_attrs.get("val_r1"), "r1_drop": trial.user_attrs.get("r1_drop"),
            "params": dict(trial.params)}


def trials_frame(method: str, study: optuna.Study) -> pd.DataFrame:
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration",
                                          "intermediate_values", "constraints"))
    frame.insert(0, "method", method)
    frame.insert(1, "study", study.study_name)
    return frame.drop(columns=[c for c in frame.columns if c == "user_attrs_val_files"])


def plot(study: optuna.Study, out: Path) -> dict[str, str]:
    """PNG per plot, or the reason it could not be drawn (importances need 2+ completed trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    made = {}
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in PLOTS.items():
        path = out / f"{name}.png"
        path.unlink(missing_ok=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = getattr(ovm, fn)(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            made[name] = str(path)
        except (ValueError, RuntimeError, IndexError) as e:
            plt.close("all")
            made[name] = f"not drawn: {e}"
    return made


def write(studies: dict[str, optuna.Study], cfg: TuneConfig, mlflow_cfg: MlflowConfig, provenance: dict) -> dict:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, best_params, frames = {}, {}, []
    for method, study in studies.items():
        c = counts(study)
        if c["complete"] + c["pruned"] < cfg.n_trials:
            raise UserError(f"study {study.study_name}: {c} — fewer than tune.n_trials={cfg.n_trials} finished; "
                            "run the tune stage again to resume it")
        best_params[method] = best(study)
        frames.append(trials_frame(method, study))
        plots = plot(study, out / "plots" / method)
        feasible = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if all(v <= 0 for v in t.constraints.values())]
        summary[method] = {"study": study.study_name, "trials": c, "feasible": len(feasible),
                           "baseline": study.user_attrs.get("baseline"), "best": best_params[method], "plots": plots}
    (out / "best_params.yaml").write_text(
        "# written by the tune stage: train.use_tuned: true merges each method's params into its run\n"
        + yaml.safe_dump(best_params, sort_keys=False))
    pd.concat(frames, ignore_index=True).to_csv(out / "trials.csv", index=False)
    (out / "summary.json").write_text(json.dumps({**summary, "provenance": provenance}, indent=2, default=str) + "\n")
    for method, study in studies.items():
        files = [out / "best_params.yaml", out / "trials.csv", *summary[method]["plots"].values()]
        _log_study(mlflow_cfg, study, best_params[method], summary[method]["trials"], files)
    for method, b in best_params.items():
        if b["status"] != "ok":
            log.warning("tune %s: no best trial (%s); train.use_tuned keeps its params.yaml values", method, b["status"])
    return summary


def _log_study(mlflow_cfg: MlflowConfig, study: optuna.Study, best_trial: dict, c: dict, files: list) -> None:
    run_id = study.user_attrs.get("mlflow_run_id")
    if not run_id:
        return
    with tracking.client_run(mlflow_cfg, "tune", run_id=run_id) as run:
        run.log_metrics({f"trials_{k}": v for k, v in c.items() if v} |
                        ({"best_value": best_trial["value"]} if best_trial["status"] == "ok" else {}))
        run.set_tags({"best_status": best_trial["status"], "best_params": json.dumps(best_trial["params"])})
        for path in files:
            if Path(path).is_file():
                run.log_artifact(path, artifact_path="tune")
