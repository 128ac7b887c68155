"""DVC stage validate: Great Expectations suites over the manifest and every generated table.
A failing suite fails the stage (and so everything downstream) with the rows at fault."""

from pathlib import Path

from compclip.config import params
from compclip.validation.validate import validate_tables
from stages import run

if __name__ == "__main__":
    p = params()
    run(lambda: validate_tables(Path(p.ingest.out_dir) / "manifest.parquet",
                                Path(p.negatives.out_dir) / "negatives.parquet",
                                Path(p.positives.out_dir) / "positives.parquet",
                                p.validate_.out_dir, p.validate_.max_words, p.positives.min_similarity,
                                p.concepts.out_dir, p.concepts.min_group_size, p.concepts.hard_negative_threshold))
