"""A record of the orchestration layer on a real Prefect server: start a server and a process worker on
127.0.0.1, `prefect deploy --all` from a copy of this repository on tiny params (as tests/integration/
test_flows.py does), run the pipeline deployment with two methods, and write `prefect deployment ls`, the
flow run's subflows and task states (with their durations) and the MLflow runs it made.

  python bench/flow_run.py --out bench/results/flow_run_cpu.json [--methods clip ce_clip]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.test_dvc_repro import copy_repo, shrink  # noqa: E402
from tests.integration.test_flows import (client, flow_name, prefect, run_deployment, subflow_runs,  # noqa: E402
                                          task_runs, wait_state)
from tests.servers import prefect_server, prefect_worker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--methods", nargs="+", default=["clip", "ce_clip"])
    ap.add_argument("--out", help="write the record with its provenance to this JSON file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        repo = root / "repo"
        copy_repo(repo)
        shrink(repo / "params.yaml")
        for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "compclip"],
                    ["git", "config", "user.email", "bench@compclip"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "tiny"]):
            subprocess.run(cmd, cwd=repo, check=True)
        with prefect_server(root / "server") as api:
            for pool in ("compclip-cpu", "compclip-gpu"):
                prefect(root, api, "work-pool", "create", pool, "--type", "process", "--overwrite")
            prefect(root, api, "deploy", "--all", cwd=repo)
            listing = prefect(root, api, "deployment", "ls")
            print(listing)
            with prefect_worker(root, api, "compclip-cpu", repo):
                t = time.monotonic()
                run_id = run_deployment(api, "compclip-pipeline/on-demand", {"methods": a.methods})
                state = wait_state(api, run_id, timeout=3600)
                wall = time.monotonic() - t
            subs = sorted(subflow_runs(api, run_id), key=lambda r: r.start_time)
            record = {"flow_run": run_id, "state": state, "wall_s": round(wall, 1), "deployment_ls": listing,
                      "subflows": []}
            for sub in subs:
                tasks = sorted(task_runs(api, [str(sub.id)]), key=lambda t: t.start_time)
                record["subflows"].append({
                    "flow": flow_name(api, sub.flow_id), "state": sub.state.type.value,
                    "tasks": [{"stage": t.name, "state": t.state.type.value, "runs": t.run_count,
                               "seconds": round(t.total_run_time.total_seconds(), 1)} for t in tasks]})
            with client(api) as c:
                schedules = {f"{flow_name(api, dep.flow_id)}/{dep.name}": [s.schedule.cron for s in dep.schedules]
                             for dep in c.read_deployments()}
            record["schedules"] = schedules
    print(f"compclip-pipeline/on-demand {a.methods}: {state} in {wall:.0f} s")
    for sub in record["subflows"]:
        print(f"  {sub['flow']}: {sub['state']}")
        for t in sub["tasks"]:
            print(f"    {t['stage']:<22} {t['state']:<10} runs={t['runs']}  {t['seconds']:6.1f} s")
    if a.out:
        from compclip.provenance import write_result

        write_result(a.out, record, vars(a))


if __name__ == "__main__":
    main()
