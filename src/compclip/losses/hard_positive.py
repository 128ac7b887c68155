"""Hard positives trained next to hard negatives (Kamath et al., ECCV 2024; REFERENCE §6).

A hard positive P_i is a meaning-preserving rewrite of caption T_i, so image i has two right answers.
- i2t: every (image, positive) pair is a row of a multi-positive InfoNCE whose rivals are all other
  candidates [T; P; H] except the image's own positives: −log e^{s_ip} / (e^{s_ip} + Σ_rivals e^{s_ic}).
- t2i: T_i and each P_i are text rows over the B images, target i.
- rank: mean over valid (i, k) of max(0, margin + s(I_i, H_ik) − s(I_i, P_i)), weighted: ask the rewrite
  to beat the negative, which is what brittleness measures.
Samples without a positive (pos_mask False) contribute as in NegCLIP; with no positives at all the
contrastive term equals NegClipLoss exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compclip.losses.negclip import negative_logits


class HardPositiveLoss(nn.Module):
    def __init__(self, rank_weight: float = 1.0, margin: float = 0.0, mask_invalid: bool = True):
        super().__init__()
        self.rank_weight, self.margin, self.mask_invalid = rank_weight, margin, mask_invalid

    def forward(self, image_features, text_features, logit_scale, neg_features, neg_mask, pos_features, pos_mask,
                output_dict=True, **_):
        b = image_features.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=image_features.device)
        s_true = logit_scale * image_features @ text_features.T
        s_pos = logit_scale * image_features @ pos_features.T
        s_neg = negative_logits(image_features, neg_features, logit_scale)
        neg_ok = neg_mask.reshape(1, -1).expand_as(s_neg) if self.mask_invalid else torch.ones_like(s_neg, dtype=torch.bool)

        # i2t: rivals are every available candidate that is not one of the image's own positives
        rivals = torch.cat([s_true.masked_fill(eye, -torch.inf),
                            s_pos.masked_fill(eye | ~pos_mask[None, :], -torch.inf),
                            s_neg.masked_fill(~neg_ok, -torch.inf)], dim=1)
        rival_lse = torch.logsumexp(rivals, dim=1)
        pos_scores = torch.stack([s_true.diagonal(), s_pos.diagonal()], dim=1)  # (B, 2)
        per_pair = torch.logaddexp(pos_scores, rival_lse[:, None]) - pos_scores
        has = torch.stack([torch.ones_like(pos_mask), pos_mask], dim=1)
        i2t = per_pair[has].mean()

        # t2i: captions and valid positives are rows over the images
        labels = torch.arange(b, device=image_features.device)
        t2i_rows = torch.cat([s_true.T, s_pos.T[pos_mask]])
        t2i = F.cross_entropy(t2i_rows, torch.cat([labels, labels[pos_mask]]))

        # rank: the rewrite above each of the sample's valid negatives
        s_own_neg = logit_scale * torch.einsum("bd,bkd->bk", image_features, neg_features)
        pairs = pos_mask[:, None] & (neg_mask if self.mask_invalid else torch.ones_like(neg_mask))
        gaps = F.relu(self.margin + s_own_neg - s_pos.diagonal()[:, None])
        rank = gaps[pairs].sum() / pairs.sum().clamp(min=1)
        return {"contrastive_loss": (i2t + t2i) / 2, "rank_loss": self.rank_weight * rank}
