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


def macro_with_ci(correct: np.ndarray, groups: np.ndarray, keep: set[str], samples: int, confidence: float,
                  seed: int) -> dict:
    """The unweighted mean over groups (of those in `keep`) of each group's accuracy, as ARO's macro
    accuracy, with a percentile bootstrap over items (a group missing from a resample is left out of it)."""
    correct, groups = np.asarray(correct, dtype=float), np.asarray(groups)
    mask = np.isin(groups, sorted(keep))
    correct, groups = correct[mask], groups[mask]
    names, ids = np.unique(groups, return_inverse=True)
    out = {"n": int(correct.size), "groups": int(len(names))}
    if not correct.size:
        return {"accuracy": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), **out}

    def macro(idx: np.ndarray) -> np.ndarray:  # idx: (b, n) resampled item indices -> (b,) macro accuracies
        g = ids[idx]
        offset = (np.arange(idx.shape[0]) * len(names))[:, None]
        hits = np.bincount((g + offset).ravel(), weights=correct[idx].ravel(), minlength=idx.shape[0] * len(names))
        counts = np.bincount((g + offset).ravel(), minlength=idx.shape[0] * len(names))
        with np.errstate(invalid="ignore", divide="ignore"):
            per = (hits / counts).reshape(idx.shape[0], len(names))
        return np.nanmean(per, axis=1)

    value = float(macro(np.arange(correct.size)[None, :])[0])
    rng = np.random.default_rng(seed)
    means = np.concatenate([macro(rng.integers(0, correct.size, size=(min(100, samples - s), correct.size)))
                            for s in range(0, samples, 100)])
    alpha = (1 - confidence) / 2
    return {"accuracy": value, "ci_low": float(np.quantile(means, alpha)),
            "ci_high": float(np.quantile(means, 1 - alpha)), **out}


def mean_of_files_with_ci(per_file: dict[str, np.ndarray], samples: int, confidence: float, seed: int,
                          weights: dict[str, float] | None = None) -> dict:
    """The (weighted) mean of several files' accuracies (SugarCrepe's groups, VALSE's avg, VL-CheckList's
    categories), each file resampled on its own. Weights default to equal; they are renormalized over the
    files that have items."""
    files = {k: np.asarray(v, dtype=float) for k, v in per_file.items() if len(v)}
    if not files:
        return {"accuracy": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "files": 0}
    w = np.array([1.0 if weights is None else weights[k] for k in files])
    w = w / w.sum()
    rng = np.random.default_rng(seed)
    boots = sum(wi * v[rng.integers(0, v.size, size=(samples, v.size))].mean(axis=1) for wi, v in zip(w, files.values()))
    alpha = (1 - confidence) / 2
    return {"accuracy": float(sum(wi * v.mean() for wi, v in zip(w, files.values()))),
            "ci_low": float(np.quantile(boots, alpha)), "ci_high": float(np.quantile(boots, 1 - alpha)),
            "n": int(sum(v.size for v in files.values())), "files": len(files)}


def correct_choice(scores) -> bool:
    """The first (true) text scores strictly above every other: a tie is wrong."""
    return bool(scores[0] > max(scores[1:]))


def rank_of_true(scores) -> int:
    """1-based rank of the true text among its options; ties rank it below (a tie never helps)."""
    return int(1 + sum(s >= scores[0] for s in scores[1:]))
