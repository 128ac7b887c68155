"""NegCLIP: image->text contrastive with each sample's hard negatives appended to the text candidates.

logits_per_image = s(I, [T; H]) has shape (B, B + B*K); logits_per_text = s(T, I) stays (B, B): hard
negatives are not images' rivals on the text side (CE-CLIP's ITC, REFERENCE §1.3). Labels are arange(B),
which still point at the true captions because they come first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss


def negative_logits(image_features, neg_features, logit_scale):
    """s(I_i, H_j) for every image and every negative in the batch: (B, B*K)."""
    return logit_scale * image_features @ neg_features.reshape(-1, neg_features.shape[-1]).T


def mask_invalid(logits: torch.Tensor, neg_mask: torch.Tensor) -> torch.Tensor:
    """Placeholder negatives ('###': the caption had no word of that type) become impossible candidates."""
    return logits.masked_fill(~neg_mask.reshape(1, -1), float("-inf"))


class NegClipLoss(ClipLoss):
    """ClipLoss with hard negatives as extra text candidates. Features arrive gathered (see distributed.py),
    so the parent is used with world_size 1."""

    def __init__(self, mask_invalid: bool = True):
        super().__init__(cache_labels=True)
        self.mask_invalid = mask_invalid

    def itc(self, image_features, text_features, logit_scale, neg_features, neg_mask):
        logits_true = logit_scale * image_features @ text_features.T
        logits_neg = negative_logits(image_features, neg_features, logit_scale)
        if self.mask_invalid:
            logits_neg = mask_invalid(logits_neg, neg_mask)
        logits_per_image = torch.cat([logits_true, logits_neg], dim=1)
        labels = self.get_ground_truth(image_features.device, image_features.shape[0])
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_true.T, labels)) / 2
        return loss, logits_true, logits_neg

    def forward(self, image_features, text_features, logit_scale, neg_features, neg_mask, output_dict=True, **_):
        loss, _, _ = self.itc(image_features, text_features, logit_scale, neg_features, neg_mask)
        return {"contrastive_loss": loss}
