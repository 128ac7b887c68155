"""DVC stage evaluate@<method>: SugarCrepe-format accuracy with CIs, retrieval, hard positives (ATA,
brittleness) and abstraction levels -> reports/evaluate/<method>/metrics.json, and into the method's MLflow run."""

import json
import sys
from pathlib import Path

import compclip.evaluation.encode  # noqa: F401  the stage loads a model: open_clip is imported before run()
                                   # freezes the imports (after it, the collection at the end walks it all)
from compclip.config import params
from compclip.evaluation.report import headline_table, sugarcrepe_table
from compclip.evaluation.run import run_evaluation
from stages import run


def main(method: str):
    p = params()
    p.recipe(method)  # a clear error for a method params.yaml does not define
    summary = json.loads((Path(p.train.out_dir) / method / "summary.json").read_text())
    results = run_evaluation(summary["model"], p.evaluate, Path(p.ingest.out_dir) / "manifest.parquet", p.seed,
                             p.train.device, p.mlflow, summary["run_id"],
                             benchmarks=Path(p.benchmarks.out_dir) if p.benchmarks else None,
                             out_dir=Path(p.evaluate.out_dir) / method,
                             training={k: summary.get(k) for k in ("steps", "batch_size", "negative_rules", "recipe")})
    print(sugarcrepe_table({method: results}))
    print(headline_table({method: results}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m stages.evaluate METHOD   (a key of params.yaml `methods`)")
    run(lambda: main(sys.argv[1]))
