"""Score a model on SugarCrepe-format files and on test-split retrieval, with bootstrap CIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from compclip.evaluation.metrics import accuracy_with_ci, retrieval_recall
from compclip.evaluation.sugarcrepe import GROUPS, Item
from compclip.text.context import over_context, same_after_cut

if TYPE_CHECKING:
    from compclip.evaluation.encode import EmbeddingCache


def score_sugarcrepe(cache: EmbeddingCache, files: dict[str, list[Item]], samples: int, confidence: float,
                     seed: int, held_out: set[str] | None = None) -> dict:
    """Per file: correct iff cos(image, caption) > cos(image, negative) (strict, as SugarCrepe).
    With held_out image paths, also the accuracy on those items alone (combinations never trained on) and
    on the rest ("seen": every combination in the image also occurs in training)."""
    results = {}
    for name, all_items in files.items():
        paths = [it.image_path for it in all_items]
        items = [it for it, ok in zip(all_items, cache.usable(paths)) if ok]
        skipped = cache.skipped(paths)
        if not items:
            results[name] = {**accuracy_with_ci(np.array([]), samples, confidence, seed), "skipped": skipped}
            continue
        img = cache.image_matrix([it.image_path for it in items])
        pos = cache.text_matrix([it.caption for it in items])
        neg = cache.text_matrix([it.negative for it in items])
        correct = ((img * pos).sum(1) > (img * neg).sum(1)).numpy()
        results[name] = {**accuracy_with_ci(correct, samples, confidence, seed), "skipped": skipped,
                         "over_context": context_counts(cache.bundle.tokenizer, items)}
        if held_out:
            mask = np.array([it.image_path in held_out for it in items])
            results[name]["held_out"] = accuracy_with_ci(correct[mask], samples, confidence, seed)
            results[name]["seen"] = accuracy_with_ci(correct[~mask], samples, confidence, seed)
    return results


def context_counts(tokenizer, items: list[Item]) -> dict[str, int]:
    """Items with a text longer than the model's context (cut by the tokenizer), and those whose caption and
    negative the cut makes identical: the model can only tie them, and a tie counts as wrong."""
    captions, negatives = [it.caption for it in items], [it.negative for it in items]
    over = over_context(tokenizer, captions) | over_context(tokenizer, negatives)
    return {"items": int(over.sum()), "tied_by_cut": int(same_after_cut(tokenizer, captions, negatives).sum())}


def group_means(per_file: dict) -> dict[str, float]:
    """The CE-CLIP paper's Table 3 view: the mean of the files within REPLACE, SWAP and ADD."""
    return {g: float(np.mean([per_file[f]["accuracy"] for f in fs])) for g, fs in GROUPS.items()
            if all(f in per_file for f in fs)}


def score_retrieval(cache: EmbeddingCache, rows: pd.DataFrame, ks: list[int]) -> dict:
    rows = rows[rows["bbox_x"].isna()]  # whole-image captions only; region crops are not retrieval targets
    ok = cache.usable(rows["image_path"].tolist())
    skipped = cache.skipped(list(dict.fromkeys(rows["image_path"])))
    rows = rows[ok]
    images = list(dict.fromkeys(rows["image_path"]))
    row_of = {p: i for i, p in enumerate(images)}
    out = retrieval_recall(cache.image_matrix(images), cache.text_matrix(rows["caption"].tolist()),
                           rows["image_path"].map(row_of).to_numpy(), ks)
    out["images"], out["captions"], out["chance_R@1"] = len(images), len(rows), 1 / len(images)
    out["skipped_images"] = skipped
    return out


def score_hard_positives(cache: EmbeddingCache, items: list[dict], samples: int, confidence: float, seed: int) -> dict:
    """Original accuracy P[s(c) > s(c_n)], Augmented Test Accuracy P[s(c_n) < s(c_p) and s(c_n) < s(c)],
    brittleness P[s(c) > s(c_n) > s(c_p) or s(c_p) > s(c_n) > s(c)] (Kamath et al., divided by N),
    per source file and over all items."""
    if not items:
        return {}
    items = [it for it, ok in zip(items, cache.usable([it["image_path"] for it in items])) if ok]
    if not items:
        return {}
    img = cache.image_matrix([it["image_path"] for it in items])
    s_c, s_p, s_n = ((img * cache.text_matrix([it[k] for it in items])).sum(1).numpy()
                     for k in ("true_caption", "positive_caption", "false_caption"))
    outcomes = {"original": s_c > s_n, "augmented": (s_n < s_p) & (s_n < s_c),
                "brittleness": ((s_c > s_n) & (s_n > s_p)) | ((s_p > s_n) & (s_n > s_c))}
    sources = np.array([it["source"] for it in items])
    out = {}
    for name in ["all", *sorted(set(sources))]:
        mask = np.ones(len(items), bool) if name == "all" else sources == name
        out[name] = {k: accuracy_with_ci(v[mask], samples, confidence, seed) for k, v in outcomes.items()}
    return out


def score_abstraction(cache: EmbeddingCache, items: list[dict], samples: int, confidence: float, seed: int) -> dict:
    """CLEAR GLASS's 2-way test per level: i2t, the image prefers its own level-L text to the distractor's;
    t2i, its level-L text prefers it to the distractor image. Items whose two texts are equal at a level
    (both "shape") cannot be told apart there and are left out of that level (n says how many remain)."""
    if not items:
        return {}
    both = cache.usable([it["image_path"] for it in items]) & cache.usable([it["distractor_path"] for it in items])
    items = [it for it, ok in zip(items, both) if ok]
    if not items:
        return {}
    img = cache.image_matrix([it["image_path"] for it in items])
    dis = cache.image_matrix([it["distractor_path"] for it in items])
    out = {}
    for level in items[0]["texts"]:
        keep = np.array([it["texts"][level] != it["distractor_texts"][level] for it in items])
        own = cache.text_matrix([it["texts"][level] for it in items])
        other = cache.text_matrix([it["distractor_texts"][level] for it in items])
        s_own = (img * own).sum(1).numpy()
        i2t = s_own > (img * other).sum(1).numpy()
        t2i = s_own > (dis * own).sum(1).numpy()
        out[level] = {"i2t": accuracy_with_ci(i2t[keep], samples, confidence, seed),
                      "t2i": accuracy_with_ci(t2i[keep], samples, confidence, seed)}
    return out
