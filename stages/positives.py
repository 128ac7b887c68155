"""DVC stage positives: meaning-preserving rewrites of every caption, filtered by MiniLM similarity."""

from pathlib import Path

from compclip.config import params
from compclip.text.positives_table import build_positives
from stages import run

if __name__ == "__main__":
    p = params()
    run(lambda: build_positives(Path(p.ingest.out_dir) / "manifest.parquet",
                                Path(p.negatives.out_dir) / "negatives.parquet", p.positives, p.seed))
