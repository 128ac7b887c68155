"""Score a model on SugarCrepe-format files and on test-split retrieval, with bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from compclip.evaluation.encode import EmbeddingCache
from compclip.evaluation.metrics import accuracy_with_ci, retrieval_recall
from compclip.evaluation.sugarcrepe import GROUPS, Item


def score_sugarcrepe(cache: EmbeddingCache, files: dict[str, list[Item]], samples: int, confidence: float,
                     seed: int, held_out: set[str] | None = None) -> dict:
    """Per file: correct iff cos(image, caption) > cos(image, negative) (strict, as SugarCrepe).
    With held_out image paths, also the accuracy on those items alone (combinations never trained on)."""
    results = {}
    for name, items in files.items():
        img = cache.image_matrix([it.image_path for it in items])
        pos = cache.text_matrix([it.caption for it in items])
        neg = cache.text_matrix([it.negative for it in items])
        correct = ((img * pos).sum(1) > (img * neg).sum(1)).numpy()
        results[name] = accuracy_with_ci(correct, samples, confidence, seed)
        if held_out:
            mask = np.array([it.image_path in held_out for it in items])
            results[name]["held_out"] = accuracy_with_ci(correct[mask], samples, confidence, seed)
    return results


def group_means(per_file: dict) -> dict[str, float]:
    """The CE-CLIP paper's Table 3 view: the mean of the files within REPLACE, SWAP and ADD."""
    return {g: float(np.mean([per_file[f]["accuracy"] for f in fs])) for g, fs in GROUPS.items()
            if all(f in per_file for f in fs)}


def score_retrieval(cache: EmbeddingCache, rows: pd.DataFrame, ks: list[int]) -> dict:
    rows = rows[rows["bbox_x"].isna()]  # whole-image captions only; region crops are not retrieval targets
    images = list(dict.fromkeys(rows["image_path"]))
    row_of = {p: i for i, p in enumerate(images)}
    out = retrieval_recall(cache.image_matrix(images), cache.text_matrix(rows["caption"].tolist()),
                           rows["image_path"].map(row_of).to_numpy(), ks)
    out["images"], out["captions"], out["chance_R@1"] = len(images), len(rows), 1 / len(images)
    return out
