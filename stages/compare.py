"""DVC stage compare: every method (and the blind baseline) on every benchmark -> reports/compare/
(compare.md, a self-contained compare.html, compare.png, compare.json), also logged to MLflow."""

from pathlib import Path

from compclip.config import params
from compclip.evaluation.compare import compare
from stages import run

if __name__ == "__main__":
    p = params()
    blind = Path(p.evaluate.out_dir) / "blind" / "metrics.json"  # the blind stage's (empty when switched off)
    run(lambda: compare({m: Path(p.evaluate.out_dir) / m / "metrics.json" for m in p.methods}, p.compare.out_dir,
                        blind, p.mlflow))
