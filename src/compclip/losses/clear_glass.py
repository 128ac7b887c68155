"""CLEAR GLASS grouped contrastive loss (REFERENCE §7.1). Features come as (M groups, N items, D).

Total = α·outer + (1−α)·inner; the learned logit_scale is not used: fixed τ (outer) and τ' (inner).
- pairwise: outer = multi-positive InfoNCE over all MN images × MN texts, every same-group pair a
  positive: −log Σ_{b∈g(a)} e^{S_ab} / Σ_b e^{S_ab}, S = cos/τ, both directions averaged.
  inner = each group's N² Hadamard products z = normalize(img_a ⊙ txt_b) classified against the group
  centroids c_g = normalize(mean z) with CE(z·Cᵀ/τ', g), averaged over all products.
- centroid: outer = CLIP loss between image centroids and text centroids (M×M);
  inner = each image against the image centroids and each text against the text centroids, CE/τ'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _group_labels(m: int, n: int, device) -> torch.Tensor:
    return torch.arange(m, device=device).repeat_interleave(n)


def pairwise_outer(images: torch.Tensor, texts: torch.Tensor, tau: float) -> torch.Tensor:
    m, n, d = images.shape
    img, txt = F.normalize(images.reshape(m * n, d), dim=-1), F.normalize(texts.reshape(m * n, d), dim=-1)
    groups = _group_labels(m, n, images.device)
    same = groups[:, None] == groups[None, :]

    def direction(s):
        return (torch.logsumexp(s, dim=1) - torch.logsumexp(s.masked_fill(~same, -torch.inf), dim=1)).mean()

    s = img @ txt.T / tau
    return (direction(s) + direction(s.T)) / 2


def pairwise_inner(images: torch.Tensor, texts: torch.Tensor, tau_inner: float) -> torch.Tensor:
    m, n, d = images.shape
    z = F.normalize(images[:, :, None, :] * texts[:, None, :, :], dim=-1).reshape(m, n * n, d)
    centroids = F.normalize(z.mean(dim=1), dim=-1)
    logits = z.reshape(m * n * n, d) @ centroids.T / tau_inner
    return F.cross_entropy(logits, _group_labels(m, n * n, images.device))


def centroid_outer(images: torch.Tensor, texts: torch.Tensor, tau: float) -> torch.Tensor:
    img_c = F.normalize(F.normalize(images, dim=-1).mean(dim=1), dim=-1)
    txt_c = F.normalize(F.normalize(texts, dim=-1).mean(dim=1), dim=-1)
    logits = img_c @ txt_c.T / tau
    labels = torch.arange(images.shape[0], device=images.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def centroid_inner(images: torch.Tensor, texts: torch.Tensor, tau_inner: float) -> torch.Tensor:
    m, n, d = images.shape
    labels = _group_labels(m, n, images.device)
    total = 0.0
    for feats in (images, texts):
        x = F.normalize(feats, dim=-1)
        centroids = F.normalize(x.mean(dim=1), dim=-1)
        total = total + F.cross_entropy(x.reshape(m * n, d) @ centroids.T / tau_inner, labels)
    return total / 2


VARIANTS = {"pairwise": (pairwise_outer, pairwise_inner), "centroid": (centroid_outer, centroid_inner)}


class ClearGlassLoss(nn.Module):
    def __init__(self, variant: str = "pairwise", alpha: float = 0.7, tau: float = 0.1, tau_inner: float = 0.07):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"clear_glass.variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.outer, self.inner = VARIANTS[variant]
        self.alpha, self.tau, self.tau_inner = alpha, tau, tau_inner

    def forward(self, group_image_features, group_text_features, output_dict=True, **_):
        return {"outer_loss": self.alpha * self.outer(group_image_features, group_text_features, self.tau),
                "inner_loss": (1 - self.alpha) * self.inner(group_image_features, group_text_features, self.tau_inner)}
