"""AdamW that updates only the token embedding's rows the run has read (one CPU process).

open_clip's text towers embed 49,408 tokens; the demo's captions and negatives use a few dozen of them. A
dense AdamW step still reads and writes every row of the weight, its gradient and both moments, and
gradient clipping reads the whole gradient: on the demo model most of the optimizer's work. A row no text
has read has a zero gradient and zero moments, so AdamW's update of it is weight decay alone,
w <- w (1 - lr wd), one factor shared by every such row. Here:

- the embedding's backward is sparse (the rows the batch read), so clipping reads only those;
- a row is "used" from the first forward that reads it; just before that forward it is multiplied by the
  decay it is owed, and from then on torch's fused AdamW kernel updates it every step, on a gathered copy
  of the used rows (the same kernel and arithmetic as the dense update, gradient or not);
- the decay the unused rows are owed is one number, multiplied into them when they are first read, and into
  all of them when the weights are saved (`settle`, from the embedding's state_dict and the optimizer's).

The weights are the dense AdamW's up to float rounding (an owed decay is one product, not one multiplication
per step). Only where the embedding's gradient may be sparse: not under DistributedDataParallel (which
reduces a sparse gradient as sparse) and not on a GPU, where the dense pass is cheap.
"""

from __future__ import annotations

import torch
from torch.optim.adamw import adamw as adamw_update


class EmbeddingRowsAdamW(torch.optim.AdamW):
    """torch's fused AdamW for every parameter but `embedding.weight`, whose used rows it updates itself."""

    def __init__(self, param_groups: list[dict], embedding: torch.nn.Embedding, **adamw_kwargs):
        super().__init__(param_groups, fused=True, **adamw_kwargs)
        self.weight = embedding.weight
        # by index: load_state_dict replaces the group dicts (and the scheduler sets the new ones' lr)
        self.group_index = next(i for i, g in enumerate(self.param_groups)
                                if any(p is self.weight for p in g["params"]))
        if self.param_groups[self.group_index]["amsgrad"] or self.param_groups[self.group_index]["maximize"]:
            raise ValueError("EmbeddingRowsAdamW: amsgrad and maximize are not supported")
        embedding.sparse = True
        self.used = torch.zeros(len(self.weight), dtype=torch.bool)
        self.owed = 1.0  # the decay every unused row is owed since the last settle()
        embedding.register_forward_pre_hook(self._read)
        embedding.register_state_dict_pre_hook(lambda *_: self.settle())

    @torch.no_grad()
    def _read(self, module: torch.nn.Embedding, args: tuple) -> None:
        rows = args[0].unique()
        new = rows[~self.used[rows]]
        if len(new):
            if self.owed != 1.0:
                self.weight.index_copy_(0, new, self.weight.index_select(0, new) * self.owed)
            self.used[new] = True

    @torch.no_grad()
    def settle(self) -> None:
        """Multiply the decay the unused rows are owed into them: the weights are the dense AdamW's."""
        if self.owed != 1.0:
            self.weight[~self.used] *= self.owed
            self.owed = 1.0

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("EmbeddingRowsAdamW.step takes no closure")
        grad, self.weight.grad = self.weight.grad, None  # the fused step below leaves the embedding alone
        try:
            super().step()
        finally:
            self.weight.grad = grad
        if grad is not None:  # as AdamW: a parameter without a gradient is not stepped (nor decayed)
            self._step_rows(grad)

    def _step_rows(self, grad: torch.Tensor) -> None:
        w, g = self.weight, self.param_groups[self.group_index]
        state = self.state[w]
        if not state:
            state.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(w), exp_avg_sq=torch.zeros_like(w))
        rows = self.used.nonzero().squeeze(1)
        slot = torch.full((len(w),), -1, dtype=torch.long)
        slot[rows] = torch.arange(len(rows))
        if not grad.is_sparse:
            raise RuntimeError("EmbeddingRowsAdamW: the token embedding's gradient is dense (was embedding.sparse "
                               "turned off?)")
        where = slot[grad._indices()[0]]  # uncoalesced: a row read twice has two entries, summed as coalesce() would
        if (where < 0).any():
            raise RuntimeError("EmbeddingRowsAdamW: a gradient for rows no forward of the embedding read "
                               "(was its weight used without calling the module?)")
        dense = w.new_zeros(len(rows), w.shape[1]).index_add_(0, where, grad._values())
        p, m, v = (t.index_select(0, rows) for t in (w, state["exp_avg"], state["exp_avg_sq"]))
        adamw_update([p], [dense], [m], [v], [], [state["step"]], fused=True, amsgrad=False, beta1=g["betas"][0],
                     beta2=g["betas"][1], lr=g["lr"], weight_decay=g["weight_decay"], eps=g["eps"], maximize=False)
        w.index_copy_(0, rows, p)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        self.owed *= 1.0 - g["lr"] * g["weight_decay"]

    def state_dict(self) -> dict:
        self.settle()  # the saved weights and the saved owed decay always agree
        return {**super().state_dict(), "embedding_rows": {"used": self.used.clone(), "owed": self.owed}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Also a dense AdamW's state (a checkpoint from before this optimizer): it stepped every row, so
        nothing is owed, and the rows with moments are the used ones (a torch AdamW loads this one's state too:
        it ignores the extra key, and the saved weights are settled)."""
        state_dict = dict(state_dict)
        rows = state_dict.pop("embedding_rows", None)
        super().load_state_dict(state_dict)
        if rows is None:
            m = self.state.get(self.weight)
            used = ((m["exp_avg"] != 0) | (m["exp_avg_sq"] != 0)).any(1) if m else torch.zeros_like(self.used)
            rows = {"used": used, "owed": 1.0}
        self.used.copy_(rows["used"])
        self.owed = float(rows["owed"])

