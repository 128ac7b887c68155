"""Loss terms and the weighted sum a method trains on.

Each term is an nn.Module whose forward takes the step's (already gathered) features as keyword
arguments and returns a dict of named terms, open_clip's convention; `CombinedLoss` weights and prefixes
them ("ce_clip/cmr_loss") and the trainer sums the dict. A term says which parts of a batch it needs
(`NEEDS`), so a clip run never loads negatives and a clear_glass run never loads pairs.
"""

from __future__ import annotations

import logging

from open_clip.loss import ClipLoss
from torch import nn

from compclip.config import LossConfig
from compclip.names import LOSS_TERMS
from compclip.losses.ce_clip import CeClipLoss
from compclip.losses.clear_glass import ClearGlassLoss
from compclip.losses.hard_positive import HardPositiveLoss
from compclip.losses.negclip import NegClipLoss

NEEDS = {"clip": {"pairs"}, "negclip": {"pairs", "negatives"}, "ce_clip": {"pairs", "negatives"},
         "hard_positive": {"pairs", "negatives", "positives"}, "clear_glass": {"groups"}}
assert set(NEEDS) == set(LOSS_TERMS)
# Terms that contain an image-text contrastive (InfoNCE) loss of their own.
CONTRASTIVE = ("clip", "negclip", "ce_clip", "hard_positive")
log = logging.getLogger(__name__)


def settings(recipe: dict[str, float], cfg: LossConfig) -> dict:
    """The part of `loss` a recipe uses (and so the part that changes its result)."""
    needs = set().union(*(NEEDS[name] for name in recipe))
    out = {name: getattr(cfg, name).model_dump(mode="json") for name in recipe if hasattr(cfg, name)}
    if "negatives" in needs:
        out |= {"negative_rules": list(cfg.negative_rules), "mask_invalid": cfg.mask_invalid}
    return out


class ClipTerm(ClipLoss):
    """open_clip's ClipLoss on gathered features (world_size 1 here: distributed.py did the gather)."""

    def __init__(self):
        super().__init__(cache_labels=True)

    def forward(self, image_features, text_features, logit_scale, output_dict=True, **_):
        return super().forward(image_features, text_features, logit_scale, output_dict=True)


def build_term(name: str, cfg: LossConfig, neg_types: list[str]) -> nn.Module:
    if name == "clip":
        return ClipTerm()
    if name == "negclip":
        return NegClipLoss(cfg.mask_invalid)
    if name == "ce_clip":
        return CeClipLoss(neg_types, mask_invalid=cfg.mask_invalid, **cfg.ce_clip.model_dump())
    if name == "hard_positive":
        h = cfg.hard_positive
        return HardPositiveLoss(h.rank_weight, h.margin, cfg.mask_invalid)
    if name == "clear_glass":
        c = cfg.clear_glass
        return ClearGlassLoss(c.variant, c.alpha, c.tau, c.tau_inner)
    raise ValueError(f"unknown loss term {name!r}; known: {LOSS_TERMS}")


class CombinedLoss(nn.Module):
    """Σ_t w_t · term_t. Its state (CE-CLIP's thresholds) goes into checkpoints with the model's."""

    def __init__(self, recipe: dict[str, float], cfg: LossConfig, neg_types: list[str]):
        super().__init__()
        self.weights = dict(recipe)
        self.terms = nn.ModuleDict({name: build_term(name, cfg, neg_types) for name in recipe})
        self.needs = set().union(*(NEEDS[name] for name in recipe))
        # placeholders are never read by any term: the step may skip encoding them
        self.skips_invalid = "negatives" not in self.needs or cfg.mask_invalid
        contrastive = [t for t in recipe if t in CONTRASTIVE and recipe[t] > 0]
        self.contrastive_weight = sum(recipe[t] for t in contrastive)
        if len(contrastive) > 1:
            log.warning("recipe %s: %s each bring an image-text contrastive loss, so it is counted %d times "
                        "(total weight %.2g); this is intended for `combined`, say so if not",
                        recipe, " and ".join(contrastive), len(contrastive), self.contrastive_weight)

    def forward(self, **features) -> dict:
        out = {}
        for name, term in self.terms.items():
            for key, value in term(**features).items():
                out[f"{name}/{key}"] = self.weights[name] * value
        return out

    def begin_epoch(self) -> None:
        for term in self.terms.values():
            if hasattr(term, "begin_epoch"):
                term.begin_epoch()

    def end_step(self) -> None:
        for term in self.terms.values():
            if hasattr(term, "end_step"):
                term.end_step()

    def metrics(self) -> dict[str, float]:
        out = {}
        for name, term in self.terms.items():
            if hasattr(term, "metrics"):
                out |= {f"{name}/{k}": v for k, v in term.metrics().items()}
        return out


def build_loss(recipe: dict[str, float], cfg: LossConfig | None = None, neg_types: list[str] | None = None) -> CombinedLoss:
    """The recipe's weighted sum. neg_types defaults to cfg.negative_rules, read only when a term needs negatives."""
    cfg = cfg or LossConfig()
    if neg_types is None:
        needs_negatives = any("negatives" in NEEDS[name] for name in recipe if name in NEEDS)
        neg_types = list(cfg.negative_rules) if needs_negatives else []
    return CombinedLoss(recipe, cfg, neg_types)
