"""DVC stage blind: the text-only baseline (params.yaml evaluate.blind) on every benchmark of evaluate.suite
it can attempt -> reports/evaluate/blind/. How much of each benchmark is solvable without the image."""

from pathlib import Path

from compclip.config import params
from compclip.evaluation.run import run_blind
from stages import run

if __name__ == "__main__":
    p = params()
    run(lambda: run_blind(p.evaluate, Path(p.ingest.out_dir) / "manifest.parquet", p.seed,
                          Path(p.evaluate.out_dir) / "blind"))
