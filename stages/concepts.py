"""DVC stage concepts: concept hierarchy, image groups and concept-level hard negatives (CLEAR GLASS)."""

from pathlib import Path

from compclip.config import params
from compclip.text.concepts_table import build_concepts
from stages import run

if __name__ == "__main__":
    p = params()
    run(lambda: build_concepts(Path(p.ingest.out_dir) / "manifest.parquet", p.concepts, p.seed))
