"""Texts longer than a model's text context. open_clip's tokenizers cut them to `context_length` without a
word; compclip counts them (training summary, MLflow, evaluation output) and can skip them instead.

A text can only be over when its UTF-8 bytes (plus start/end tokens) exceed the context: every token covers
at least one byte. Only those few are tokenized again, without the cut, to count their real length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SPECIAL_TOKENS = 4  # start and end, and room for tokenizers that add more


def context_length(tokenizer) -> int:
    return int(tokenizer.context_length)


def _pad_id(tokenizer) -> int:
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a transformers tokenizer
    pad = getattr(inner, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def over_context(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Which texts the tokenizer cuts at its context length."""
    limit = context_length(tokenizer)
    out = np.zeros(len(texts), dtype=bool)
    maybe = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) + SPECIAL_TOKENS > limit]
    if not maybe:
        return out
    longest = max(len(texts[i].encode("utf-8")) for i in maybe) + SPECIAL_TOKENS
    tokens = tokenizer([texts[i] for i in maybe], context_length=max(longest, limit + 1))
    out[maybe] = (tokens[:, limit:] != _pad_id(tokenizer)).any(dim=1).numpy()
    return out


def same_after_cut(tokenizer, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Pairs that the cut makes identical (the difference lay past the context): a model can only tie them."""
    out = np.zeros(len(a), dtype=bool)
    over = np.flatnonzero(over_context(tokenizer, a) | over_context(tokenizer, b))
    if len(over):
        ta = tokenizer([a[i] for i in over])
        tb = tokenizer([b[i] for i in over])
        out[over] = torch.all(ta == tb, dim=1).numpy()
    return out
