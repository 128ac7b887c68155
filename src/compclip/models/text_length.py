"""Text encoding without the padding: each text runs only up to its end token.

open_clip's CLIP text tower always runs the full context (77 for OpenAI's models, 32 for compclip's tiny
configs), but shapes-world captions and their negatives are 15 tokens at the median. With the causal mask
a position never attends to later ones, and the features are read at the end token, so the padding after
it cannot change them. Two ways to skip it, both giving open_clip's features to float rounding:

- on CPU, texts are packed: several short texts share one row of the context (first-fit decreasing by
  length), each with its own positions 0..n-1 and an attention mask that lets a token see only the earlier
  tokens of its own text; the row's work is its texts' tokens and little else (bench/step_speedups.py
  counts a demo step's FLOPs);
- on other devices (not measured with packing yet), texts are sorted by length and encoded in buckets,
  each cut to its longest text.

Hard-negative methods encode (1+K) texts per image, so this is most of their step.

`fit_text_length(model)` installs it on an open_clip `CLIP` whose text tower is causal and pools at the end
token (packing also needs torch's MultiheadAttention, which takes a mask per row; other blocks get buckets);
any other model (CoCa, SigLIP-style towers, HF text towers) keeps its own `encode_text`.
"""

from __future__ import annotations

import types

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import text_global_pool

MIN_BUCKET = 128  # rows per encoder call (buckets): smaller ones cost more in call overhead than they save


def supports(model: torch.nn.Module) -> bool:
    return (isinstance(model, CLIP) and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) in ("argmax", "eos"))


def packable(model: CLIP) -> bool:
    """Packing needs a mask per row: torch's MultiheadAttention takes one (open_clip's custom blocks do not)."""
    return all(isinstance(getattr(block, "attn", None), torch.nn.MultiheadAttention)
               for block in model.transformer.resblocks)


def end_positions(model: CLIP, text: torch.Tensor) -> torch.Tensor:
    """Where each text's features are read (open_clip's text_global_pool)."""
    if model.text_pool_type == "argmax":
        return text.argmax(dim=-1)
    return (text == model.text_eos_id).int().argmax(dim=-1)


def buckets(lengths: torch.Tensor, min_rows: int = MIN_BUCKET) -> list[torch.Tensor]:
    """Row indices sorted by length, in up to 4 equal buckets of at least min_rows rows."""
    order = torch.argsort(lengths, stable=True)
    parts = max(1, min(4, len(order) // min_rows))
    return [part for part in order.chunk(parts) if len(part)]


def _encode_cut(model: CLIP, text: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text on texts cut to their longest end position."""
    n = text.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = text_global_pool(x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection if model.text_projection is not None else x


def pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Rows of text indices whose lengths sum to at most capacity: first-fit decreasing, ties in input order
    (deterministic). A row with less room than the shortest text is never looked at again, so a batch of
    similar lengths (an evaluation's, sorted) costs about one look per text, not one per row."""
    rows: list[list[int]] = []
    room: list[int] = []
    shortest = min(lengths, default=0)
    open_rows: list[int] = []  # rows that can still take the shortest text, in order
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r in open_rows:
            if room[r] >= lengths[i]:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            r = len(rows)
            rows.append([i])
            room.append(capacity - lengths[i])
            open_rows.append(r)
        if room[r] < shortest:
            open_rows.remove(r)
    return rows


def _encode_packed(model: CLIP, text: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Features of every text, encoded packed into rows (see the module's docstring)."""
    lengths = (ends + 1).tolist()
    rows = pack(lengths, text.shape[1])
    # where each text's tokens go: row, first column; then every token's (text, position) -> (row, column)
    row_of, start = np.zeros(len(lengths), dtype=np.int64), np.zeros(len(lengths), dtype=np.int64)
    width = 0
    for r, members in enumerate(rows):
        used = 0
        for i in members:
            row_of[i], start[i] = r, used
            used += lengths[i]
        width = max(width, used)
    n = np.asarray(lengths, dtype=np.int64)
    src_text = np.repeat(np.arange(len(n)), n)
    position = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    dst_row, dst_col = row_of[src_text], start[src_text] + position
    to = lambda a: torch.from_numpy(a).to(text.device)  # noqa: E731
    packed = text.new_zeros(len(rows), width)
    packed[to(dst_row), to(dst_col)] = text[to(src_text), to(position)]
    positions = torch.zeros(len(rows), width, dtype=torch.long, device=text.device)
    positions[to(dst_row), to(dst_col)] = to(position)
    segment = torch.full((len(rows), width), -1, dtype=torch.long, device=text.device)  # -1: padding
    segment[to(dst_row), to(dst_col)] = to(src_text)

    cast_dtype = model.transformer.get_cast_dtype()
    # F.embedding, not positional_embedding[positions]: indexing's backward accumulates with atomic adds on
    # CPU (run-to-run different sums); embedding's backward is deterministic
    x = model.token_embedding(packed).to(cast_dtype)
    x = x + F.embedding(positions, model.positional_embedding).to(cast_dtype)
    # a token sees the earlier tokens of its own text (padding sees itself: no row of -inf, no NaN)
    col = torch.arange(width, device=text.device)
    allowed = (segment[:, :, None] == segment[:, None, :]) & (col[:, None] >= col[None, :])
    mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))
    heads = model.transformer.resblocks[0].attn.num_heads
    x = model.transformer(x, attn_mask=mask.repeat_interleave(heads, dim=0))  # MHA's shape: (rows*heads, W, W)
    x = model.ln_final(x)
    x = x[to(row_of), to(start + n - 1)]  # each text's end token
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection if model.text_projection is not None else x


def _encode_bucketed(model: CLIP, text: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Features of every text, encoded in length-sorted buckets each cut to its longest text."""
    out = None
    for rows in buckets(ends):
        cut = int(ends[rows].max()) + 1
        features = _encode_cut(model, text[rows, :cut])
        if out is None:
            out = features.new_empty(len(text), features.shape[-1])
        out = out.index_copy(0, rows.to(out.device), features)
    return _encode_cut(model, text) if out is None else out  # no texts: open_clip's empty result


def encode_text_fitted(model: CLIP, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    ends = end_positions(model, text)
    encode = _encode_packed if text.device.type == "cpu" and len(text) and packable(model) else _encode_bucketed
    out = encode(model, text, ends)
    return F.normalize(out, dim=-1) if normalize else out


def fit_text_length(model: torch.nn.Module) -> bool:
    """Make model.encode_text (and so model.forward) skip the padding; False where it cannot."""
    if not supports(model):
        return False
    model.encode_text = types.MethodType(encode_text_fitted, model)
    return True
