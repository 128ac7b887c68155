"""The negatives step: manifest -> negatives.parquet, streamed in chunks, cached by caption content.

A caption's negatives depend only on its text and the settings (rules, filler, seed), so each unique
caption is generated once, and a content-hash cache (sqlite) skips captions already done in an earlier
run. Memory stays flat: one chunk of the manifest at a time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from compclip.config import NegativesConfig
from compclip.data.world import Scene, SceneObject, Vocabulary, parse_caption
from compclip.text.fillers import LexiconFiller, MaskedLMFiller
from compclip.text.negatives import RULES, Negative, generate
from compclip.text.nlp import SPATIAL_NOUNS, load_spacy, tokens

SCHEMA = pa.schema([("sample_id", pa.string()), ("caption", pa.string()), ("negative", pa.string()),
                    ("neg_type", pa.string()), ("rule", pa.string()), ("filler", pa.string()), ("valid", pa.int8())])


class CaptionCache:
    """key -> generated rows (JSON) in one sqlite file."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get_many(self, keys: list[str]) -> dict[str, list]:
        out = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = f"SELECT key, value FROM rows WHERE key IN ({','.join('?' * len(part))})"
            out.update({k: json.loads(v) for k, v in self.db.execute(q, part)})
        return out

    def put_many(self, items: dict[str, list]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in items.items()])
        self.db.commit()


def _filler(cfg: NegativesConfig, nlp, captions: list[str], seed: int):
    if cfg.filler == "mlm":
        return MaskedLMFiller(cfg.mlm_model, cfg.mlm_top_k, cfg.mlm_rank), \
            f"mlm|{cfg.mlm_model}|{cfg.mlm_top_k}|{cfg.mlm_rank}"
    sample = list(dict.fromkeys(captions))[:cfg.lexicon_sample]
    lex = LexiconFiller.from_tokens((tokens(d) for d in nlp.pipe(sample, batch_size=cfg.batch_size)), seed,
                                    exclude=SPATIAL_NOUNS)
    digest = hashlib.sha256(json.dumps(lex.words, sort_keys=True).encode()).hexdigest()[:16]
    return lex, f"lexicon|{digest}"


class SceneChecker:
    """Shapes world only: is a negative false in the scene its image shows?"""

    def __init__(self, scenes_file: Path):
        root = Path(scenes_file).parent
        self.scenes: dict[str, Scene] = {}
        values = defaultdict(set)
        with open(scenes_file) as f:
            for line in f:
                rec = json.loads(line)
                objs = tuple(SceneObject(o["shape"], o["color"], o["size"], o["pattern"], o["row"], o["col"])
                             for o in rec["objects"])
                self.scenes[str(root / rec["image_path"])] = Scene(objs)
                for o in rec["objects"]:
                    for k in ("shape", "color", "size", "pattern"):
                        values[k].add(o[k])
        self.vocab = Vocabulary(*(tuple(sorted(values[k])) for k in ("shape", "color", "size", "pattern")))

    def verdict(self, image_path: str, text: str) -> str:
        scene = self.scenes.get(image_path)
        if scene is None:
            return "no_scene"
        d = parse_caption(text, self.vocab)
        if d is None:
            return "unparseable"
        return "true" if d.is_true_in(scene) else "false"


def build_negatives(manifest: Path, cfg: NegativesConfig, seed: int) -> dict:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nlp = load_spacy(cfg.spacy_model)
    source = pq.ParquetFile(manifest)
    first = source.read_row_group(0, columns=["caption"]).column("caption").to_pylist() if source.num_row_groups else []
    filler, filler_key = _filler(cfg, nlp, first, seed)
    settings = json.dumps([cfg.rules, filler_key, seed, cfg.spacy_model])
    cache = CaptionCache(out_dir / "cache" / "captions.sqlite")
    checker = SceneChecker(cfg.scenes) if cfg.scenes and Path(cfg.scenes).exists() else None

    counts: dict[str, Counter] = defaultdict(Counter)
    checks: dict[str, Counter] = defaultdict(Counter)
    cached_hits = generated = 0
    columns = ["sample_id", "caption", "image_path", "bbox_x"]
    with pq.ParquetWriter(out_dir / "negatives.parquet", SCHEMA) as writer, \
            tqdm(total=source.metadata.num_rows, desc="negatives", unit="caption") as bar:
        for batch in source.iter_batches(batch_size=cfg.chunk_size, columns=columns):
            chunk = batch.to_pandas()
            keys = {c: hashlib.sha256(f"{settings}|{c}".encode()).hexdigest() for c in chunk["caption"].unique()}
            found = cache.get_many(list(keys.values()))
            missing = [c for c, k in keys.items() if k not in found]
            fresh: dict[str, list] = defaultdict(list)
            for neg in generate(((c, c) for c in missing), nlp, filler, seed, cfg.rules, cfg.batch_size):
                fresh[keys[neg.caption]].append([neg.negative, neg.neg_type, neg.rule, neg.filler, neg.valid])
            cache.put_many(fresh)
            found.update(fresh)
            cached_hits += len(keys) - len(missing)
            generated += len(missing)
            rows = []
            for r in chunk.itertuples(index=False):
                for negative, neg_type, rule, filler_name, valid in found[keys[r.caption]]:
                    rows.append(Negative(r.sample_id, r.caption, negative, neg_type, rule, filler_name, valid))
                    counts[rule]["valid" if valid else "placeholder"] += 1
                    if checker and valid and pd.isna(r.bbox_x):
                        checks[rule][checker.verdict(r.image_path, negative)] += 1
            writer.write_table(pa.Table.from_pylist([asdict(n) for n in rows], schema=SCHEMA))
            bar.update(len(chunk))

    summary = {"captions": source.metadata.num_rows, "unique_captions_generated": generated,
               "cache_hits": cached_hits, "filler": filler_key.split("|")[0],
               "coverage": {rule: {"neg_type": RULES[rule][0], "valid": c["valid"],
                                   "placeholder": c["placeholder"],
                                   "fraction": round(c["valid"] / max(1, c["valid"] + c["placeholder"]), 4)}
                            for rule, c in counts.items()}}
    if checker:
        summary["scene_check"] = {rule: {**dict(c), "false_fraction": round(c["false"] / max(1, c["false"] + c["true"]), 4)}
                                  for rule, c in checks.items()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
