"""Texts longer than a model's text context. open_clip's tokenizers cut them to `context_length` without a
word; compclip counts them (training summary, MLflow, evaluation output) and can skip them instead.

Each distinct text is tokenized once, one token wider than the context, which tells both its ids and whether
the context cuts it (text.tokens, which also keeps them on disk).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from compclip.text.tokens import context_length, tokenize

__all__ = ["context_length", "over_context", "same_after_cut"]


def over_context(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Which texts the tokenizer cuts at its context length (tokenized once per distinct text: text.tokens)."""
    return tokenize(tokenizer, texts)[1]


def same_after_cut(tokenizer, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Pairs that the cut makes identical (the difference lay past the context): a model can only tie them."""
    ta, over_a = tokenize(tokenizer, a)
    tb, over_b = tokenize(tokenizer, b)
    return (over_a | over_b) & torch.all(ta == tb, dim=1).numpy()
