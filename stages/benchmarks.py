"""DVC stage benchmarks: hard-positive (ATA, brittleness) and abstraction-level test items, built once."""

from compclip.config import params
from compclip.evaluation.benchmarks import build_benchmarks
from stages import run

if __name__ == "__main__":
    run(lambda: build_benchmarks(params()))
