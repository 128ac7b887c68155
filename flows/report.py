"""What a flow run publishes as Prefect artifacts: which stages ran, the comparison table, the registry's
decision, and links to the MLflow runs the flow run made (stages tag them with the flow run's id)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_markdown_artifact


def mlflow_runs(root: Path, flow_run_id: str) -> tuple[str, list[dict]]:
    """(tracking URI, runs tagged with this flow run) from the store params.yaml names."""
    from mlflow.tracking import MlflowClient

    from compclip import tracking
    from compclip.config import load_params

    cfg = load_params(root / "params.yaml").mlflow
    if not tracking.enabled(cfg):
        return "", []
    uri = tracking.USER_TRACKING_URI or cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        db = root / uri.removeprefix("sqlite:///")  # relative to the repository (an absolute path stays as it is)
        uri = f"sqlite:///{db}"
        if not db.exists():  # no run was ever tracked: do not create a store just to look
            return uri, []
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return uri, []
    runs = client.search_runs([exp.experiment_id], f"tags.`compclip.flow_run_id` = '{flow_run_id}'",
                              order_by=["attributes.start_time ASC"])
    return uri, [{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
                  "experiment_id": exp.experiment_id} for r in runs]


def _runs_markdown(uri: str, runs: list[dict]) -> str:
    if not runs:
        return "No MLflow runs were made by this flow run (every stage was up to date, or tracking is off).\n"
    web = uri.startswith(("http://", "https://"))
    lines = ["| MLflow run | status | id |", "|---|---|---|"]
    for r in runs:
        name = f"[{r['name']}]({uri.rstrip('/')}/#/experiments/{r['experiment_id']}/runs/{r['run_id']})" if web \
            else r["name"]
        lines.append(f"| {name} | {r['status']} | `{r['run_id']}` |")
    if not web:
        lines.append(f"\nStore `{uri}`: open it with `mlflow ui --backend-store-uri {uri}`.")
    return "\n".join(lines) + "\n"


def _stages_markdown(stages: list[dict]) -> str:
    return "\n".join(["| stage | result |", "|---|---|", *(f"| {s['stage']} | {s['status']} |" for s in stages)]) + "\n"


def publish(root: Path, flow_name: str, flow_run_id: str | None, stages: list[dict], overrides: list[str],
            experiment: str | None) -> str:
    """One markdown artifact per flow run (key `compclip-<flow>`); returns its text."""
    parts = [f"# compclip {flow_name}\n"]
    if overrides:
        parts.append(f"Overrides: `{' '.join(overrides)}`; saved as DVC experiment `{experiment}`.\n")
    parts.append("## Stages\n\n" + _stages_markdown(stages))
    compare = root / "reports/compare/compare.md"
    if any(s["stage"] == "compare" for s in stages) and compare.exists():
        parts.append("## Comparison (reports/compare/compare.md)\n\n" + compare.read_text())
    decision = root / "reports/registry/decision.json"
    if any(s["stage"] == "register" for s in stages) and decision.exists():
        d = json.loads(decision.read_text())
        parts.append(f"## Registry: {d['status']}\n\n{d['reason']}\n\n```json\n"
                     + json.dumps({k: d[k] for k in ("model", "challenger", "reference", "aliases") if k in d},
                                  indent=2, default=str) + "\n```\n")
    if flow_run_id:
        uri, runs = mlflow_runs(root, flow_run_id)
        parts.append("## MLflow runs of this flow run\n\n" + _runs_markdown(uri, runs))
    text = "\n".join(parts)
    create_markdown_artifact(markdown=text, key=f"compclip-{flow_name}",
                             description=f"compclip {flow_name}: stages, comparison, MLflow runs")
    return text
