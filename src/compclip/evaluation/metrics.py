"""Accuracy with a percentile-bootstrap confidence interval, and image<->text retrieval recall@k."""

from __future__ import annotations

import numpy as np
import torch


def bootstrap_ci(correct: np.ndarray, samples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap of the mean of a 0/1 vector."""
    correct = np.asarray(correct, dtype=float)
    if correct.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, correct.size, size=(samples, correct.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def accuracy_with_ci(correct: np.ndarray, samples: int, confidence: float, seed: int) -> dict:
    lo, hi = bootstrap_ci(correct, samples, confidence, seed)
    return {"accuracy": float(np.mean(correct)) if len(correct) else float("nan"), "ci_low": lo, "ci_high": hi,
            "n": int(len(correct))}


def retrieval_recall(image_emb: torch.Tensor, text_emb: torch.Tensor, text_image: np.ndarray,
                     ks: list[int]) -> dict[str, float]:
    """COCO-style recall: an image is retrieved correctly if any of its captions is in the top k;
    a caption if its image is in the top k. text_image[j] is the row of caption j's image."""
    sims = image_emb @ text_emb.T  # (images, texts)
    text_image = torch.as_tensor(np.array(text_image))
    out = {}
    # text -> image: rank of the true image among all images for each caption
    true_score = sims[text_image, torch.arange(sims.shape[1])]
    t2i_rank = (sims > true_score[None, :]).sum(0)
    # image -> text: best rank over the image's own captions
    owns = text_image[None, :] == torch.arange(sims.shape[0])[:, None]
    best_own = sims.masked_fill(~owns, float("-inf")).max(1).values
    i2t_rank = (sims > best_own[:, None]).sum(1)
    for k in ks:
        out[f"t2i_R@{k}"] = float((t2i_rank < k).float().mean())
        out[f"i2t_R@{k}"] = float((i2t_rank < k).float().mean())
    return out
