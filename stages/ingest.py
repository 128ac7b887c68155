"""DVC stage ingest: all sources in params.yaml -> manifest.parquet + quarantine.jsonl + summary.json."""

from compclip.config import params
from compclip.data.manifest import ingest
from stages import run

if __name__ == "__main__":
    c = params().ingest
    run(lambda: ingest([(s.captions, s.images, s.split) for s in c.coco], c.vg, c.cc3m, c.out_dir,
                       c.max_caption_words, c.verify_images, c.hash_split,
                       c.max_quarantine_fraction))
