"""Benchmarks built once from the test split and shared by every method's evaluation.

- hard_positives.json: (image, caption c, hard positive c_p, hard negative c_n) items for Augmented Test
  Accuracy and brittleness (Kamath et al., REFERENCE §6). c and c_n come from the SugarCrepe-format files;
  c_p is a meaning-preserving rewrite of c by the positives rules. The Hard Positives release keeps
  (c, c_n) and (c_p, c_n) in two index-aligned files; here each item carries all three. In the shapes
  world every c_p is checked true in its image's scene graph, and items whose rewrite is not are counted.
- abstraction.json: CLEAR GLASS's per-level 2-way test (REFERENCE §7.3): a test image, a distractor image
  from a hard-negative concept of its level-1 concept, and both images' texts at every level.
- formats/: the test split in ARO, Karpathy (retrieval, COCO-Order), VALSE, VL-CheckList, CREPE and
  ImageFolder (zero-shot) formats (data/release_formats.py), read by the same readers as the real releases.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd

from compclip.config import BenchmarksConfig, Params
from compclip.evaluation.sugarcrepe import read_sugarcrepe
from compclip.hashing import stable_int
from compclip.text.nlp import load_spacy, tokens
from compclip.text.positives import RULES


def hard_positive_items(p: Params, cfg: BenchmarksConfig, checker=None) -> tuple[list[dict], Counter]:
    files = read_sugarcrepe(p.evaluate.sugarcrepe.data, p.evaluate.sugarcrepe.images, cfg.sugarcrepe_files)
    nlp = load_spacy(cfg.spacy_model)
    items, counts = [], Counter()
    for name, rows in files.items():
        docs = nlp.pipe([r.caption for r in rows], batch_size=256)
        for row, doc in zip(rows, docs):
            toks = tokens(doc)
            rng = random.Random(stable_int(f"{p.seed}|hp|{name}|{row.key}"))
            for rule in cfg.positive_rules:
                positive = RULES[rule](toks, rng)
                if positive is None or positive in (row.caption, row.negative):
                    continue
                if checker is not None and checker.verdict(row.image_path, positive) != "true":
                    counts[f"{rule}_not_true_in_scene"] += 1
                    continue
                items.append({"source": name, "key": row.key, "image_path": row.image_path, "rule": rule,
                              "true_caption": row.caption, "positive_caption": positive,
                              "false_caption": row.negative})
                counts[f"{name}/{rule}"] += 1
                break
            else:
                counts[f"{name}/no_positive"] += 1
    return items, counts


def abstraction_items(p: Params, cfg: BenchmarksConfig) -> tuple[list[dict], Counter]:
    concepts = Path(p.concepts.out_dir)
    members = pd.read_parquet(concepts / "memberships.parquet")
    manifest = pd.read_parquet(Path(p.ingest.out_dir) / "manifest.parquet")
    test = manifest[(manifest["split"] == "test") & manifest["bbox_x"].isna()]
    first_caption = test.groupby("image_path")["caption"].first()
    members = members[members["image_path"].isin(first_caption.index)].sort_values("image_path")
    members = members.assign(caption=members["image_path"].map(first_caption))
    by_concept = {c: g["image_path"].tolist() for c, g in members.groupby("level1")}
    hn = pd.read_parquet(concepts / "hard_negatives.parquet")
    hn = hn[hn["level"] == "level1"].sort_values(["concept", "similarity"], ascending=[True, False])
    negatives = hn.groupby("concept")["negative"].apply(list).to_dict()
    row_of = members.set_index("image_path")
    items, counts = [], Counter()
    for image, concept in zip(members["image_path"], members["level1"]):
        rivals = [c for c in negatives.get(concept, []) if c in by_concept]
        if not rivals:
            counts["no_hard_negative_with_test_images"] += 1
            continue
        pool = by_concept[rivals[0]]
        distractor = pool[stable_int(f"{p.seed}|abstraction|{image}") % len(pool)]
        texts = lambda img: {lvl: str(row_of.at[img, lvl]) for lvl in cfg.levels}  # noqa: E731
        items.append({"image_path": image, "distractor_path": distractor, "concept": concept,
                      "distractor_concept": rivals[0], "texts": texts(image), "distractor_texts": texts(distractor)})
        counts["items"] += 1
    return items, counts


def build_benchmarks(p: Params) -> dict:
    cfg = p.benchmarks
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checker = None
    scenes = Path(p.synth.out_dir) / "scenes.jsonl"
    if scenes.exists():
        from compclip.data.scenes import SceneChecker

        checker = SceneChecker(scenes)
    hp, hp_counts = hard_positive_items(p, cfg, checker)
    ab, ab_counts = abstraction_items(p, cfg)
    (out / "hard_positives.json").write_text(json.dumps(hp, indent=1) + "\n")
    (out / "abstraction.json").write_text(json.dumps(ab, indent=1) + "\n")
    summary = {"hard_positive_items": len(hp), "hard_positives": dict(sorted(hp_counts.items())),
               "abstraction_items": len(ab), "abstraction": dict(sorted(ab_counts.items()))}
    if cfg.formats is not None:
        import shutil

        from compclip.data.release_formats import write_release_formats

        s = p.synth
        shutil.rmtree(out / "formats", ignore_errors=True)  # no file of an earlier run may linger
        summary["formats"] = write_release_formats(
            Path(s.out_dir), out / "formats", p.seed,
            {"color": s.colors, "shape": s.shapes, "size": s.sizes, "pattern": s.patterns}, s.image_size,
            cfg.formats.per_image, cfg.formats.crepe_negatives, cfg.formats.zeroshot_per_class,
            cfg.formats.max_images)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
