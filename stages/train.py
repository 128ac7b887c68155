"""DVC stage train: fine-tune (or train from scratch) with the method in params.yaml."""

from pathlib import Path

from compclip.config import params
from compclip.training.trainer import train
from stages import run

if __name__ == "__main__":
    p = params()
    run(lambda: train(p.train, p.model, p.mlflow, Path(p.ingest.out_dir) / "manifest.parquet", p.seed))
