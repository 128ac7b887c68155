"""The negatives step: manifest -> negatives.parquet, streamed in chunks, cached by caption content.

A caption's negatives depend only on its text and the settings (rules, filler, seed), so each unique
caption is generated once, and a content-hash cache (sqlite) skips captions already done in an earlier
run. Two passes: the captions the cache lacks are generated (in this process, or sharded by content hash
over Dask workers: params `dask`), then the table is written in manifest order from the cache alone, so
it is byte-identical whatever the number of workers. Memory stays flat: one chunk of the manifest, and
a bounded number of shards, at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from compclip.cache import JsonCache
from compclip.config import DaskConfig, NegativesConfig
from compclip.data.scenes import SceneChecker
from compclip.errors import UserError
from compclip.names import PLACEHOLDER
from compclip.parallel import engine
from compclip.text import combinations
from compclip.text.fillers import LexiconFiller, MaskedLMFiller, WordTable
from compclip.text.negatives import Negative, from_tokens
from compclip.text.nlp import SPATIAL_NOUNS, cached_tokens, load_spacy, store_tokens, tokens
from compclip.text.quality import QualityReport, audit, audited

# Which negatives test relations and which test attributes, across the rule families.
FAMILY = {"relation": "relation", "replace_rel": "relation", "swap_obj": "relation",
          "attribute": "attribute", "replace_att": "attribute", "swap_att": "attribute", "add_att": "attribute"}
SCHEMA = pa.schema([("sample_id", pa.string()), ("caption", pa.string()), ("negative", pa.string()),
                    ("neg_type", pa.string()), ("rule", pa.string()), ("filler", pa.string()), ("valid", pa.int8())])


def code_version() -> str:
    """A digest of the code that turns a caption into negatives: a cached row is reused only if it matches,
    so a changed rule never serves stale negatives from an earlier run."""
    from compclip import names
    from compclip.text import combinations, fillers, grammar, negatives, nlp, quality

    h = hashlib.sha256()
    for module in (negatives, fillers, grammar, quality, nlp, names, combinations):
        h.update(Path(module.__file__).read_bytes())
    h.update((Path(grammar.__file__).parent / "lexicon" / "word_groups.json").read_bytes())
    return h.hexdigest()[:16]


def require_columns(source: pq.ParquetFile, path: Path, columns: list[str]) -> None:
    missing = [c for c in columns if c not in source.schema_arrow.names]
    if missing:
        raise UserError(f"{path}: manifest lacks column(s) {missing} (write it with `compclip ingest`)")


def _tag_shard(shard: tuple[int, list[str]], spacy_model: str) -> tuple[int, list[list[tuple]]]:
    """Tokens of a shard's captions (named tuples: they pickle fast to and from Dask workers)."""
    nlp = load_spacy(spacy_model)
    index, captions = shard
    return index, [tokens(d) for d in nlp.pipe(captions, batch_size=256)]


def _word_table(cfg: NegativesConfig, captions: list[str], run) -> tuple[WordTable, dict[str, list[tuple]]]:
    """The corpus word table from the first `lexicon_sample` unique captions (tagged on the engine), and their
    tokens, which the generation pass reuses instead of parsing them again."""
    sample = list(dict.fromkeys(captions))[:cfg.lexicon_sample]
    parsed = cached_tokens(sample, cfg.spacy_model)  # text.nlp: what this or another stage parsed before
    todo = [c for c in sample if c not in parsed]
    step = max(1, min(cfg.chunk_size, -(-len(todo) // (2 * run.workers))))
    shards = [(i, todo[i:i + step]) for i in range(0, len(todo), step)]
    tagged = dict(run.map_unordered(_tag_shard, shards, cfg.spacy_model)) if shards else {}
    fresh = {c: toks for i, part in shards for c, toks in zip(part, tagged[i])}
    if fresh:
        store_tokens(fresh, cfg.spacy_model)  # the positives and concepts stages parse none of these again
    parsed |= fresh
    table = WordTable.from_tokens((parsed[c] for c in sample), exclude=SPATIAL_NOUNS)
    return table, parsed


@dataclass(frozen=True)
class MLMSpec:
    model: str
    top_k: int
    rank: int


@lru_cache(maxsize=2)
def _mlm(spec: MLMSpec) -> MaskedLMFiller:
    return MaskedLMFiller(spec.model, WordTable(), spec.top_k, spec.rank)


@dataclass(frozen=True)
class Generator:
    """Everything a process needs to turn captions into negatives (sent once to each Dask worker)."""
    spacy_model: str
    rules: tuple[str, ...]
    seed: int
    batch_size: int
    table: WordTable
    mlm: MLMSpec | None  # None: the lexicon filler
    quality_sample: float

    def filler(self):
        if self.mlm is None:
            return LexiconFiller(self.table, self.seed)
        f = _mlm(self.mlm)
        f.table = self.table  # the model is loaded once per process; the checks follow this run's corpus
        return f


def generate_shard(shard: list[tuple[str, str, list | None]], gen: Generator) -> tuple[dict[str, dict], dict]:
    """(cache key, caption, tokens or None) -> {key: {rows, combinations}}, and this process's peak memory (a
    Dask task, or in process). Captions without tokens are parsed here. A caption's rows depend on its text
    and the settings only, never on the other captions of the shard. Each row: negative, neg_type, rule,
    filler, valid, the quality audit (check -> passed) for the stable share of captions that is audited
    (else None), and the combinations the negative brings in (text.combinations); `combinations`: those the
    caption states."""
    nlp = load_spacy(gen.spacy_model)
    todo = [c for _, c, toks in shard if toks is None]
    fresh = dict(zip(todo, (tokens(d) for d in nlp.pipe(todo, batch_size=gen.batch_size))))
    parsed = [(k, c, fresh[c] if toks is None else toks) for k, c, toks in shard]
    rows: dict[str, list] = defaultdict(list)
    to_audit: list[tuple[str, list]] = []  # (cache key, row) of the audited captions
    toks_of = {k: toks for k, _, toks in parsed}
    sampled = {k for k, c, _ in parsed if audited(c, gen.seed, gen.quality_sample)}
    for neg in from_tokens(((k, c, toks) for k, c, toks in parsed), gen.filler(), gen.seed, gen.rules):
        brought = combinations.introduced(neg.negative, toks_of[neg.sample_id], gen.table) if neg.valid else []
        row = [neg.negative, neg.neg_type, neg.rule, neg.filler, neg.valid, None, brought]
        if neg.valid and neg.sample_id in sampled:
            to_audit.append((neg.sample_id, row))
        rows[neg.sample_id].append(row)
    negatives = [row[0] for _, row in to_audit]
    for (key, row), doc in zip(to_audit, nlp.pipe(negatives, batch_size=gen.batch_size)):
        row[5] = audit(toks_of[key], tokens(doc), row[1], gen.table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {k: {"rows": rows[k], "combinations": sorted(combinations.stated(toks_of[k]))} for k in toks_of}
    return out, {"pid": os.getpid(), "peak_rss_mib": peak, "captions": len(shard)}


def _shards(source: pq.ParquetFile, cfg: NegativesConfig, settings: str, cache: JsonCache, n_shards: int,
            done: set[str], seen: list[int], parsed: dict[str, list]) -> Iterator[list[tuple[str, str, list | None]]]:
    """The captions the cache lacks, each once, bucketed by content hash into n_shards; a bucket goes out as
    a shard when it holds chunk_size captions. The consumer adds the keys it has cached to `done`; they
    leave `pending` (keys out or buffered) only at the next chunk, whose cache lookup then sees them.
    A caption tagged for the word table goes out with its tokens (taken from `parsed`: parsed once)."""
    buckets: list[list[tuple[str, str]]] = [[] for _ in range(n_shards)]
    pending: set[str] = set()
    for batch in source.iter_batches(batch_size=cfg.chunk_size, columns=["caption", "split"]):
        pending -= done
        done.clear()
        chunk = batch.to_pandas()
        captions = chunk.loc[chunk["split"].isin(cfg.splits), "caption"].unique()
        keys = {c: caption_key(settings, c) for c in captions}
        seen[0] += len(keys)
        cached = cache.has_many(list(keys.values()))
        for c, k in keys.items():
            if k in cached or k in pending:
                continue
            pending.add(k)
            bucket = buckets[int(k[:8], 16) % n_shards]
            bucket.append((k, c, parsed.pop(c, None)))
            if len(bucket) >= cfg.chunk_size:
                yield bucket[:]
                bucket.clear()
    yield from (b for b in buckets if b)


def caption_key(settings: str, caption: str) -> str:
    return hashlib.sha256(f"{settings}|{caption}".encode()).hexdigest()


def fill_cache(source: pq.ParquetFile, cfg: NegativesConfig, settings: str, cache: JsonCache, gen: Generator,
               run, parsed: dict[str, list]) -> dict:
    """Generate every caption the cache lacks (in process, or sharded on Dask); count what was done."""
    done: set[str] = set()
    seen = [0]
    workers: dict[int, float] = {}
    generated = 0
    with tqdm(desc="negatives: generate", unit="caption") as bar:
        for rows, stats in run.map_unordered(generate_shard, _shards(source, cfg, settings, cache, run.workers, done,
                                                                     seen, parsed), gen):
            cache.put_many(rows)
            done.update(rows)
            generated += len(rows)
            workers[stats["pid"]] = max(workers.get(stats["pid"], 0), stats["peak_rss_mib"])
            bar.update(len(rows))
    return {"unique_captions_generated": generated, "cache_hits": seen[0] - generated,
            "peak_rss_mib_per_process": sorted(round(v) for v in workers.values())}


UNSEEN_FILE = "unseen_combinations.jsonl"


def combination_counts(source: pq.ParquetFile, cfg: NegativesConfig, settings: str, cache: JsonCache) -> Counter:
    """How many training captions (of cfg.splits, each occurrence) state each combination."""
    seen: Counter = Counter()
    for batch in source.iter_batches(batch_size=cfg.chunk_size, columns=["caption", "split"]):
        chunk = batch.to_pandas()
        captions = chunk.loc[chunk["split"].isin(cfg.splits), "caption"]
        keys = {c: caption_key(settings, c) for c in captions.unique()}
        found = cache.get_many(list(keys.values()))
        for c in captions:
            seen.update(found[keys[c]]["combinations"])
    return seen


class UnseenCombinations:
    """Negatives that bring in a combination fewer than cfg.min_combination_count training captions state:
    with cfg.unseen_combinations "drop" each becomes a placeholder (valid 0) in the table and is kept, with
    the combinations, in unseen_combinations.jsonl; with "keep" it stays and is only counted."""

    def __init__(self, cfg: NegativesConfig, seen: Counter, path: Path):
        self.policy, self.min_count, self.seen, self.path = cfg.unseen_combinations, cfg.min_combination_count, seen, path
        self.counts: dict[str, Counter] = defaultdict(Counter)

    def __enter__(self):
        self.file = open(self.path, "w")
        return self

    def __exit__(self, *exc):
        self.file.close()

    def apply(self, sample_id: str, caption: str, row: list) -> list:
        negative, neg_type, rule, filler_name, valid, verdict, brought = row
        if not valid:
            return row
        self.counts[rule]["valid"] += 1
        rare = [c for c in brought if self.seen[c] < self.min_count]
        if not rare:
            return row
        self.counts[rule]["unseen"] += 1
        if self.policy == "keep":
            return row
        self.counts[rule]["dropped"] += 1
        self.file.write(json.dumps({"sample_id": sample_id, "caption": caption, "negative": negative, "rule": rule,
                                    "combinations": rare}) + "\n")
        return [PLACEHOLDER, neg_type, rule, filler_name, 0, None, brought]

    def summary(self) -> dict:
        return {"policy": self.policy, "min_count": self.min_count, "training_combinations": len(self.seen),
                "by_rule": {rule: {"valid": c["valid"], "unseen": c["unseen"], "dropped": c["dropped"],
                                   "unseen_fraction": round(c["unseen"] / max(1, c["valid"]), 4)}
                            for rule, c in sorted(self.counts.items())}}


def build_negatives(manifest: Path, cfg: NegativesConfig, seed: int, dask: DaskConfig | None = None) -> dict:
    dask = dask or DaskConfig()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = pq.ParquetFile(manifest)
    require_columns(source, manifest, ["sample_id", "caption", "image_path", "bbox_x", "split"])
    first = source.read_row_group(0, columns=["caption"]).column("caption").to_pylist() if source.num_row_groups else []
    cache = JsonCache(out_dir / "cache" / "captions.sqlite")  # caption key -> its rows
    checker = SceneChecker(cfg.scenes) if cfg.scenes and Path(cfg.scenes).exists() else None
    clock = {"start": time.perf_counter()}
    with engine(dask) as run:
        clock["engine_up"] = time.perf_counter()
        table, parsed = _word_table(cfg, first, run)
        clock["lexicon"] = time.perf_counter()
        mlm = MLMSpec(cfg.mlm_model, cfg.mlm_top_k, cfg.mlm_rank) if cfg.filler == "mlm" else None
        filler_key = f"mlm|{cfg.mlm_model}|{cfg.mlm_top_k}|{cfg.mlm_rank}" if mlm else "lexicon"
        settings = json.dumps([cfg.rules, filler_key, table.digest(), seed, cfg.spacy_model, cfg.quality_sample,
                               code_version()])
        gen = Generator(cfg.spacy_model, tuple(cfg.rules), seed, cfg.batch_size, table, mlm, cfg.quality_sample)
        work = fill_cache(source, cfg, settings, cache, gen, run, parsed)
        del parsed
        clock["generated"] = time.perf_counter()
    clock["engine_down"] = time.perf_counter()

    # the table, in manifest order, from the cache alone: the same bytes however the cache was filled
    columns = ["sample_id", "caption", "image_path", "bbox_x", "split"]
    seen = combination_counts(source, cfg, settings, cache)
    unseen = UnseenCombinations(cfg, seen, out_dir / UNSEEN_FILE)
    counts: dict[str, Counter] = defaultdict(Counter)
    checks: dict[str, Counter] = defaultdict(Counter)
    quality = QualityReport()
    family_counts: Counter = Counter()
    total_kept = 0
    whole_images = 0
    type_of: dict[str, str] = {}
    with unseen, pq.ParquetWriter(out_dir / "negatives.parquet", SCHEMA) as writer, \
            tqdm(total=source.metadata.num_rows, desc="negatives: write", unit="caption") as bar:
        for batch in source.iter_batches(batch_size=cfg.chunk_size, columns=columns):
            bar.update(batch.num_rows)
            chunk = batch.to_pandas()
            chunk = chunk[chunk["split"].isin(cfg.splits)]
            keys = {c: caption_key(settings, c) for c in chunk["caption"].unique()}
            found = cache.get_many(list(keys.values()))
            rows = []
            total_kept += len(chunk)
            for r in chunk.itertuples(index=False):
                whole_image = pd.isna(r.bbox_x)  # region phrases describe a crop, not the scene
                from_rules = [unseen.apply(r.sample_id, r.caption, row) for row in found[keys[r.caption]]["rows"]]
                exact = [(n, t, rule, "", v, None, []) for n, t, rule, v in
                         checker.exact(r.image_path, r.caption, seed, r.sample_id)] if checker and whole_image else []
                families: dict[str, int] = defaultdict(int)
                for negative, neg_type, rule, filler_name, valid, verdict, _ in from_rules + exact:
                    rows.append(Negative(r.sample_id, r.caption, negative, neg_type, rule, filler_name, valid))
                    if verdict:
                        quality.add(rule, verdict)
                    counts[rule]["valid" if valid else "placeholder"] += 1
                    type_of[rule] = neg_type
                    families[FAMILY.get(neg_type, neg_type)] |= valid
                    if checker and valid and whole_image:
                        checks[rule][checker.verdict(r.image_path, negative)] += 1
                if whole_image:  # a region phrase names one object: it has no relation to negate
                    whole_images += 1
                    for family in ("relation", "attribute"):
                        family_counts[family] += families[family]
            writer.write_table(pa.Table.from_pylist([asdict(n) for n in rows], schema=SCHEMA))

    summary = {"splits": cfg.splits, "captions": total_kept, "filler": filler_key.split("|")[0],
               "coverage": {rule: {"neg_type": type_of[rule], "valid": c["valid"],
                                   "placeholder": c["placeholder"],
                                   "fraction": round(c["valid"] / max(1, c["valid"] + c["placeholder"]), 4)}
                            for rule, c in counts.items()},
               "whole_image_captions_with_a_negative_of_family": {f: round(n / max(1, whole_images), 4)
                                                                  for f, n in family_counts.items()},
               "quality": {"sample": cfg.quality_sample, "rules": quality.as_dict()},
               "unseen_combinations": unseen.summary()}
    if checker:
        summary["scene_check"] = {rule: {**dict(c), "false_fraction": round(c["false"] / max(1, c["false"] + c["true"]), 4)}
                                  for rule, c in checks.items()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # how it ran is not a result: printed by the stage, never in summary.json
    clock["written"] = time.perf_counter()
    phases = dict(zip(("engine_start_s", "lexicon_s", "generate_s", "engine_stop_s", "write_s"),
                      (round(b - a, 3) for a, b in zip(list(clock.values()), list(clock.values())[1:]))))
    return {**summary, "execution": {"dask": dask.model_dump(), **phases,
                                     "unique_captions_generated": work["unique_captions_generated"],
                                     "cache_hits": work["cache_hits"],  # a warm cache must not change summary.json
                                     "peak_rss_mib_per_process": work["peak_rss_mib_per_process"]}}
