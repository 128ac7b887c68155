"""CE-CLIP (REFERENCE §1.3): ITC with hard negatives + α·IMC + β·CMR with an adaptive per-type threshold.

Notation: g_i = s(I_i, T_i); d_ik = s(I_i, H_ik)·m_ik for the K negatives of sample i (one per type k);
s = logit_scale · cosine, the learned temperature, everywhere.
- IMC (paper Eq. 3, the 773e8bd code form): −log e^{g_i} / (e^{g_i} + Σ_j e^{s(T_i, H_j)}), j over the
  sample's own negatives (paper) or over every negative in the batch (released code): `imc_negatives`.
- CMR: mean over all B·K entries of m_ik·max(0, Th_k + d_ik − g_i); the divisor is B·K, as released.
- Th_k for the next step = mean_i g_i − mean of the valid d_ik, clamped to [0, upper_bound] and
  detached; reset to 0 each epoch (released code) or never. `fixed` keeps Th_k = fixed_value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compclip.losses.negclip import NegClipLoss


class CeClipLoss(NegClipLoss):
    def __init__(self, types: list[str], imc_weight: float = 0.2, cmr_weight: float = 0.4,
                 imc_negatives: str = "own", mask_invalid: bool = True, threshold: str = "mean",
                 upper_bound: float = 10.0, fixed_value: float = 2.0, reset: str = "epoch"):
        super().__init__(mask_invalid)
        if imc_negatives not in ("own", "batch") or threshold not in ("mean", "fixed") or reset not in ("epoch", "never"):
            raise ValueError(f"ce_clip: bad option imc_negatives={imc_negatives!r} threshold={threshold!r} reset={reset!r}")
        self.types = list(types)
        self.imc_weight, self.cmr_weight = imc_weight, cmr_weight
        self.imc_negatives, self.threshold, self.reset = imc_negatives, threshold, reset
        self.upper_bound, self.fixed_value = upper_bound, fixed_value
        initial = fixed_value if threshold == "fixed" else 0.0
        self.register_buffer("thresholds", torch.full((len(types),), float(initial)))
        self._next: torch.Tensor | None = None

    # -- the adaptive threshold: computed from this step's logits, used from the next step on --------
    def begin_epoch(self) -> None:
        if self.threshold == "mean" and self.reset == "epoch":
            self.thresholds.zero_()

    def end_step(self) -> None:
        if self._next is not None:
            self.thresholds.copy_(self._next)
            self._next = None

    def _update(self, g: torch.Tensor, d: torch.Tensor, mask: torch.Tensor) -> None:
        if self.threshold == "fixed":
            return
        valid = mask.sum(0)
        neg_mean = d.sum(0) / valid.clamp(min=1)
        new = (g.mean() - neg_mean).clamp(0, self.upper_bound)
        self._next = torch.where(valid > 0, new, self.thresholds).detach()

    def metrics(self) -> dict[str, float]:
        return {f"threshold/{t}": float(v) for t, v in zip(self.types, self.thresholds.tolist())}

    # -- the three terms ---------------------------------------------------------------------------
    def imc(self, text_features, neg_features, neg_mask, g, logit_scale):
        if self.imc_negatives == "own":
            sims = logit_scale * torch.einsum("bd,bkd->bk", text_features, neg_features)
            mask = neg_mask
        else:
            sims = logit_scale * text_features @ neg_features.reshape(-1, neg_features.shape[-1]).T
            mask = neg_mask.reshape(1, -1).expand_as(sims)
        if self.mask_invalid:
            sims = sims.masked_fill(~mask, float("-inf"))
        logits = torch.cat([g[:, None], sims], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(g), dtype=torch.long, device=g.device))

    def cmr(self, g, d, mask):
        m = mask.to(d.dtype)
        return (m * F.relu(self.thresholds.to(d.dtype) + d - g[:, None])).mean()

    def forward(self, image_features, text_features, logit_scale, neg_features, neg_mask, output_dict=True, **_):
        itc, logits_true, _ = self.itc(image_features, text_features, logit_scale, neg_features, neg_mask)
        g = logits_true.diagonal()
        # mask_invalid: false is the released code: placeholders count in CMR and the thresholds too
        used = neg_mask if self.mask_invalid else torch.ones_like(neg_mask)
        d = logit_scale * torch.einsum("bd,bkd->bk", image_features, neg_features) * used.to(image_features.dtype)
        self._update(g.detach(), d.detach(), used)
        return {"contrastive_loss": itc,
                "imc_loss": self.imc_weight * self.imc(text_features, neg_features, neg_mask, g, logit_scale),
                "cmr_loss": self.cmr_weight * self.cmr(g, d, used)}
