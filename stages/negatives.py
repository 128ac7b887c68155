"""DVC stage negatives: manifest -> negatives.parquet (one row per caption and rule) + coverage summary;
on Dask workers when params `dask` asks (the same table either way)."""

from pathlib import Path

from compclip.config import params
from compclip.text.negatives_table import build_negatives
from stages import run

if __name__ == "__main__":
    p = params()
    run(lambda: build_negatives(Path(p.ingest.out_dir) / "manifest.parquet", p.negatives, p.seed, p.dask))
