"""DVC stage compare: every method's metrics in one table and one plot -> reports/compare/."""

from pathlib import Path

from compclip.config import params
from compclip.evaluation.compare import compare
from stages import run

if __name__ == "__main__":
    p = params()
    run(lambda: compare({m: Path(p.evaluate.out_dir) / m / "metrics.json" for m in p.methods}, p.compare.out_dir))
