"""Loss terms and the weighted sum a method trains on.

Each term is an nn.Module whose forward takes the step's (already gathered) features as keyword
arguments and returns a dict of named terms, open_clip's convention; `CombinedLoss` weights and prefixes
them ("ce_clip/cmr_loss") and the trainer sums the dict. A term says which parts of a batch it needs
(`NEEDS`), so a clip run never loads negatives and a clear_glass run never loads pairs.
"""

from __future__ import annotations

from open_clip.loss import ClipLoss
from torch import nn

from compclip.config import LOSS_TERMS, LossConfig
from compclip.losses.ce_clip import CeClipLoss
from compclip.losses.clear_glass import ClearGlassLoss
from compclip.losses.hard_positive import HardPositiveLoss
from compclip.losses.negclip import NegClipLoss

NEEDS = {"clip": {"pairs"}, "negclip": {"pairs", "negatives"}, "ce_clip": {"pairs", "negatives"},
         "hard_positive": {"pairs", "negatives", "positives"}, "clear_glass": {"groups"}}
assert set(NEEDS) == set(LOSS_TERMS)


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
    return CombinedLoss(recipe, cfg or LossConfig(), neg_types or [])
