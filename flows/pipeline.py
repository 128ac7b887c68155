"""Flow `compclip-pipeline`: generate -> tune -> train -> register, as subflows of one run (one workspace
lock, one set of overrides, one DVC experiment)."""

from prefect import flow

from flows.common import DEFAULT_STAGE_TIMEOUT_S, cli
from flows.dvc_tasks import StageFailed
from flows.generate import generate
from flows.register import register
from flows.train import train
from flows.tune import tune
from flows.workspace import experiment_name, repo_root, workspace


@flow(name="compclip-pipeline", log_prints=True)
def pipeline(methods: list[str] | None = None, overrides: list[str] | None = None,
             stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S, retries: int | None = None) -> list[dict]:
    """Everything: data, negatives, validation, tuning, training, evaluation, comparison, registry."""
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    log = get_run_logger()
    with workspace(repo_root(), methods, overrides, log, experiment_name("pipeline", flow_run.get_name())) as ws:
        if ws.nested:
            raise StageFailed("compclip-pipeline is the outermost flow; run it on its own")
        for sub in (generate, tune, train, register):
            sub(methods=methods, overrides=overrides, stage_timeout_s=stage_timeout_s, retries=retries)
        return ws.stages


if __name__ == "__main__":
    cli(pipeline)
