"""Loss terms. Each returns a dict of named terms; the trainer sums them (open_clip's convention)."""

from __future__ import annotations

from open_clip.loss import ClipLoss

METHODS = ("clip",)


def build_loss(method: str, rank: int = 0, world_size: int = 1):
    if method == "clip":
        return ClipLoss(rank=rank, world_size=world_size, cache_labels=True)
    raise ValueError(f"unknown training method {method!r}; known: {METHODS}")
