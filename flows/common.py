"""The body every compclip flow shares: hold the workspace, apply overrides, run the DVC stages the targets
need (one task each, in DVC's order), save the experiment, publish the report; `stage_flow` makes a flow
of it for a list of targets. And the command line of `python -m flows.<name>` (no server needed: Prefect
then runs the flow in ephemeral mode)."""

from __future__ import annotations

import argparse
import os

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.dvc_tasks import plan, repro_stage
from flows.report import publish
from flows.workspace import experiment_name, repo_root, workspace

DEFAULT_STAGE_TIMEOUT_S = 6 * 3600


def run_stages(flow_name: str, targets: list[str], methods: list[str] | None, overrides: list[str] | None,
               stage_timeout_s: float | None, retries: int | None) -> list[dict]:
    log = get_run_logger()
    root = repo_root()
    run_id, run_name = flow_run.get_id(), flow_run.get_name()
    experiment = experiment_name(flow_name, run_name)
    env = {"COMPCLIP_FLOW_RUN_ID": run_id or "", "COMPCLIP_FLOW_NAME": flow_name}
    task = repro_stage if retries is None else repro_stage.with_options(retries=retries)
    with workspace(root, methods, overrides, log, experiment) as ws:
        stages = plan(targets, root)  # after the overrides: `methods` decides the train@/evaluate@ stages
        done = {s["stage"] for s in ws.stages}  # a subflow of the pipeline: its earlier subflows ran these
        if skipped := [s for s in stages if s in done]:
            log.info("done earlier in this pipeline run (the workspace lock was held since): %s", ", ".join(skipped))
            stages = [s for s in stages if s not in done]
        log.info("stages, in DVC's order: %s", " -> ".join(stages))
        results = [task(stage, str(root), stage_timeout_s, env=env) for stage in stages]
        ws.stages.extend(results)
    # after the workspace closed: the experiment named in the report has been saved
    publish(root, flow_name, run_id, results, ws.overrides, None if ws.nested or not ws.overrides else experiment)
    return results


def stage_flow(name: str, targets: list[str], description: str):
    """The Prefect flow `compclip-<name>`: the DVC stages `targets` need, with the parameters every flow takes."""
    def run(methods: list[str] | None = None, overrides: list[str] | None = None,
            stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S, retries: int | None = None) -> list[dict]:
        return run_stages(name, targets, methods, overrides, stage_timeout_s, retries)

    run.__name__ = run.__qualname__ = name
    return flow(run, name=f"compclip-{name}", description=description, log_prints=True)


def cli(flow) -> None:
    ap = argparse.ArgumentParser(description=flow.description)
    ap.add_argument("--methods", nargs="+", help="methods to train (default: params.yaml's `methods`)")
    ap.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="param override, as `dvc exp run -S` takes it (repeatable); the run is saved as a DVC experiment")
    ap.add_argument("--stage-timeout", type=float, default=DEFAULT_STAGE_TIMEOUT_S, help="seconds per stage")
    ap.add_argument("--retries", type=int, help="retries per stage for transient failures (default 2)")
    a = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")  # 2 slow cores: no server yet
    flow(methods=a.methods, overrides=a.overrides, stage_timeout_s=a.stage_timeout, retries=a.retries)
