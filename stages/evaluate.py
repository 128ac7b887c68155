"""DVC stage evaluate: SugarCrepe-format accuracy with CIs and test retrieval -> reports/<method>/metrics.json."""

import json
from pathlib import Path

from compclip.config import params
from compclip.evaluation.report import sugarcrepe_table
from compclip.evaluation.run import run_evaluation
from stages import run


def main():
    p = params()
    summary = json.loads((Path(p.train.out_dir) / "summary.json").read_text())
    results = run_evaluation(summary["model"], p.evaluate, Path(p.ingest.out_dir) / "manifest.parquet", p.seed,
                             p.train.device, p.mlflow, summary["run_id"])
    print(sugarcrepe_table({p.train.method: results}))


if __name__ == "__main__":
    run(main)
