"""The one place features cross processes: gather every rank's shard, keep gradients for the local one.

Each rank then computes the loss over the global batch, so every rank holds the same loss value. Its
gradient reaches the parameters only through the local shard (open_clip's default, no gather-with-grad),
so the sum over ranks of the local gradients is the full gradient. DDP averages gradients over ranks,
so the backward of the gather scales the local gradient by world_size: a W-process run then steps with
exactly the gradient of a one-process run on the same global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class _GatherLocalGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.world_size, ctx.n = rank, world_size, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        local = grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]
        return local * ctx.world_size, None, None


def gather(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Concatenate x over ranks along dim 0 (every rank's shard has the same shape)."""
    if world_size == 1:
        return x
    if x.dtype == torch.bool:  # masks: not every backend gathers bool
        return _GatherLocalGrad.apply(x.to(torch.uint8), rank, world_size).bool()
    return _GatherLocalGrad.apply(x, rank, world_size)


def gather_features(features: dict[str, torch.Tensor], rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
    """Gather a step's features once: every tensor with a batch dimension; logit_scale is shared."""
    return {k: v if v.ndim == 0 else gather(v, rank, world_size) for k, v in features.items()}
