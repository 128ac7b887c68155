"""The token embedding's gradient on CPU without zeroing the whole table every step.

open_clip's text towers embed 49,408 tokens; a step's texts use a few hundred of them. The dense backward
allocates and zero-fills a 49,408-row gradient every step (25 MB for the demo model, the largest single op
of its step on CPU) and adds the batch's rows into it. Here the embedding's backward is sparse (the rows
the batch used), and it is added into one dense gradient kept between steps, of which only the rows
written in the last step are zeroed again. AdamW (and clipping, and the fused kernel) see the same dense
gradient as before; only the order of the additions into a row used twice in a batch can differ (float
rounding). One process on CPU only: DistributedDataParallel treats a sparse embedding's gradient as sparse,
and on a GPU the fill is cheap.
"""

from __future__ import annotations

import torch


class KeptEmbeddingGrad:
    """Install on a model's token embedding; call `reset()` after optimizer.zero_grad(set_to_none=True)."""

    def __init__(self, embedding: torch.nn.Embedding):
        embedding.sparse = True  # its backward: the used rows only
        self.weight = embedding.weight
        self.grad = torch.zeros_like(self.weight)
        self.written: list[torch.Tensor] = []  # row indices added since the last reset
        self.weight.register_hook(self._remember)

    def _remember(self, grad: torch.Tensor) -> torch.Tensor:
        self.written.append(grad._indices()[0])  # uncoalesced (.indices() would coalesce); repeats are harmless
        return grad

    def reset(self) -> None:
        """The dense gradient back on the weight, zero again: the next backward adds its rows into it."""
        for rows in self.written:
            self.grad.index_fill_(0, rows, 0.0)
        self.written.clear()
        self.weight.grad = self.grad


def keep_embedding_grad(model: torch.nn.Module, device: torch.device, world_size: int) -> KeptEmbeddingGrad | None:
    """KeptEmbeddingGrad on model.token_embedding where it applies (one CPU process, an nn.Embedding)."""
    embedding = getattr(model, "token_embedding", None)
    if device.type != "cpu" or world_size != 1 or not isinstance(embedding, torch.nn.Embedding):
        return None
    return KeptEmbeddingGrad(embedding)
