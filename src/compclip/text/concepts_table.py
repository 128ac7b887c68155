"""The concepts step: one concept chain per image, a DAG (networkx), groups of at least `min_group_size`
images per level-1 concept (smaller ones merged into a sibling under the same level-2 parent), concept-level
hard negatives by MiniLM cosine, a split by level-1 concept, and a MAGIC-format export."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from compclip.config import ConceptsConfig
from compclip.errors import UserError
from compclip.hashing import stable_unit
from compclip.text.concepts import LEVELS, LLMInferrer, RuleInferrer


def _inferrer(cfg: ConceptsConfig):
    if cfg.inferrer == "openai":
        from compclip.text.rewriters import OpenAIChatRewriter

        return LLMInferrer(OpenAIChatRewriter(cfg.llm_url, cfg.llm_model, cfg.llm_api_key_env, max_tokens=60))
    return RuleInferrer(cfg.spacy_model)


def image_chains(m: pd.DataFrame, inferrer) -> tuple[pd.DataFrame, list[str]]:
    """One chain per whole image: from the first of its captions (by sample_id) that yields one."""
    whole = m[m["bbox_x"].isna()].sort_values("sample_id")
    captions = list(dict.fromkeys(whole["caption"]))
    chains = dict(zip(captions, inferrer.infer(captions)))
    rows, unassigned = [], []
    for image, g in whole.groupby("image_path", sort=True):
        chain = next((chains[c] for c in g["caption"] if chains.get(c)), None)
        if chain is None:
            unassigned.append(image)
            continue
        rows.append({"image_path": image, "image_id": g["image_id"].iloc[0], "source": g["source"].iloc[0],
                     "captions": list(g["caption"]), **dict(zip(LEVELS, chain))})
    return pd.DataFrame(rows), unassigned


def merge_small(members: pd.DataFrame, min_size: int) -> tuple[pd.DataFrame, list[dict]]:
    """CLEAR GLASS pruning: a level-1 concept with fewer than min_size images joins its smallest sibling
    (same level-2 parent); with no sibling left it becomes its parent's catch-all."""
    members = members.copy()
    merges, stuck = [], set()
    while True:
        sizes = members.groupby("level1").size()
        small = sizes[(sizes < min_size) & ~sizes.index.isin(stuck)].sort_values(kind="stable")
        if small.empty:
            break
        concept = small.index[0]
        parent = members.loc[members["level1"] == concept, "level2"].iloc[0]
        siblings = sizes[(sizes.index != concept) & sizes.index.isin(members.loc[members["level2"] == parent, "level1"])]
        if len(siblings):
            target = siblings.sort_values(kind="stable").index[0]
        elif concept != parent:
            target = parent
        else:
            stuck.add(concept)  # an only child too small on its own: reported as an undersized group
            continue
        members.loc[members["level1"] == concept, "level1"] = target
        merges.append({"concept": concept, "into": target, "images": int(sizes[concept])})
    return members, merges


def dag(members: pd.DataFrame) -> nx.DiGraph:
    g = nx.DiGraph()
    for row in members[list(LEVELS)].drop_duplicates().itertuples(index=False):
        for k in range(3):
            g.add_edge((LEVELS[k], row[k]), (LEVELS[k + 1], row[k + 1]))
    if not nx.is_directed_acyclic_graph(g):
        raise UserError("concept hierarchy has a cycle")
    return g


def hard_negative_pairs(names: list[str], threshold: float, per_concept: int) -> list[tuple[str, str, float]]:
    """Other concepts of the same level whose names are close (MiniLM cosine above threshold).

    A concept that refines or generalises another ("purple star" / "small striped purple star": one's
    words contain the other's) is true of the same images, so it is never a negative of it."""
    from compclip.text.positives_table import sentence_model

    if len(names) < 2:
        return []
    emb = sentence_model().encode(names, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    words = [set(n.split()) for n in names]
    out = []
    for start in range(0, len(names), 1024):  # chunked: memory stays O(chunk x concepts)
        sims = emb[start:start + 1024] @ emb.T
        for r, row in enumerate(sims):
            i = start + r
            row[i] = -1
            kept = 0
            for j in np.argsort(-row):
                if row[j] <= threshold or kept == per_concept:
                    break
                if words[i] <= words[j] or words[j] <= words[i]:
                    continue
                out.append((names[i], names[j], float(row[j])))
                kept += 1
    return out


def _split(concept: str, test_fraction: float, seed: int) -> str:
    u = stable_unit(f"{seed}|{concept}")
    return "test" if u < test_fraction else "train"


def magic_export(members: pd.DataFrame, negatives: dict[str, list[str]]) -> list[dict]:
    """REFERENCE §7.2: [{concept, hard_negative, train_images, test_images}], image entries with levels."""
    out = []
    for concept, g in members.groupby("level1", sort=True):
        entries = {"train_images": [], "test_images": []}
        for r in g.itertuples(index=False):
            entries[f"{r.split}_images"].append({
                "image": r.image_id, "image_path": r.image_path, "old_captions": list(r.captions),
                "new_captions": list(r.captions), **{lvl: getattr(r, lvl) for lvl in LEVELS}})
        out.append({"concept": concept, "hard_negative": negatives.get(concept, []), **entries})
    return out


def build_concepts(manifest: Path, cfg: ConceptsConfig, seed: int) -> dict:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = pd.read_parquet(manifest)
    members, unassigned = image_chains(m, _inferrer(cfg))
    members, merges = merge_small(members, cfg.min_group_size)
    graph = dag(members)
    members["split"] = members["level1"].map(lambda c: _split(c, cfg.test_fraction, seed))

    pairs = []
    for level in LEVELS:
        names = sorted(members[level].unique())
        pairs += [{"level": level, "concept": a, "negative": b, "similarity": s}
                  for a, b, s in hard_negative_pairs(names, cfg.hard_negative_threshold, cfg.hard_negatives_per_concept)]
    negatives = defaultdict(list)
    for p in pairs:
        if p["level"] == "level1":
            negatives[p["concept"]].append(p["negative"])

    sizes = members.groupby("level1").size()
    concepts = pd.DataFrame([{"level": lvl, "concept": name, "images": int((members[lvl] == name).sum())}
                             for lvl, name in sorted(graph.nodes)])
    groups = pd.DataFrame({"concept": sizes.index, "images": sizes.values,
                           "split": [_split(c, cfg.test_fraction, seed) for c in sizes.index]})
    groups = groups[groups["images"] >= cfg.min_group_size]
    edges = pd.DataFrame([{"child_level": a[0], "child": a[1], "parent_level": b[0], "parent": b[1]}
                          for a, b in sorted(graph.edges)])
    concepts.to_parquet(out / "concepts.parquet", index=False)
    edges.to_parquet(out / "edges.parquet", index=False)
    groups.to_parquet(out / "groups.parquet", index=False)
    members.drop(columns=["captions"]).to_parquet(out / "memberships.parquet", index=False)
    pd.DataFrame(pairs, columns=["level", "concept", "negative", "similarity"]).to_parquet(
        out / "hard_negatives.parquet", index=False)
    (out / "magic.json").write_text(json.dumps(magic_export(members, negatives)))
    with open(out / "unassigned.jsonl", "w") as f:  # images whose captions gave no concept: kept, not dropped
        for image in unassigned:
            f.write(json.dumps({"image_path": image, "reason": "no noun phrase in any caption"}) + "\n")
    summary = {"images": int(m.loc[m["bbox_x"].isna(), "image_path"].nunique()), "images_with_concepts": len(members),
               "unassigned": len(unassigned), "concepts_per_level": {lvl: int(members[lvl].nunique()) for lvl in LEVELS},
               "groups": len(groups), "undersized_groups": int((sizes < cfg.min_group_size).sum()),
               "merges": len(merges), "hard_negative_pairs": {lvl: sum(p["level"] == lvl for p in pairs) for lvl in LEVELS},
               "test_concepts": int((groups["split"] == "test").sum())}
    (out / "merges.json").write_text(json.dumps(merges, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
