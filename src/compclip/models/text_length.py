"""Text encoding without the padding: each text runs only up to its end token.

open_clip's CLIP text tower always runs the full context (77 for OpenAI's models, 32 for compclip's tiny
configs), but shapes-world captions and their negatives are 15 tokens at the median. With the causal mask
a position never attends to later ones, and the features are read at the end token, so the padding after
it cannot change them: encoding texts sorted by length, in buckets each cut to its longest text, gives the
same features (to float rounding) for a fraction of the work. Hard-negative methods encode (1+K) texts per
image, so this is most of their step.

`fit_text_length(model)` installs it on an open_clip `CLIP` whose text tower is causal and pools at the
end token; any other model (CoCa, SigLIP-style towers, HF text towers) keeps its own `encode_text`.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import text_global_pool

MIN_BUCKET = 128  # rows per encoder call: measured, smaller buckets cost more in call overhead than they save


def supports(model: torch.nn.Module) -> bool:
    return (isinstance(model, CLIP) and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) in ("argmax", "eos"))


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


def encode_text_fitted(model: CLIP, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    ends = end_positions(model, text)
    out = None
    for rows in buckets(ends):
        cut = int(ends[rows].max()) + 1
        features = _encode_cut(model, text[rows, :cut])
        if out is None:
            out = features.new_empty(len(text), features.shape[-1])
        out = out.index_copy(0, rows.to(out.device), features)
    if out is None:  # no texts
        out = _encode_cut(model, text)
    return F.normalize(out, dim=-1) if normalize else out


def fit_text_length(model: torch.nn.Module) -> bool:
    """Make model.encode_text (and so model.forward) skip the padding; False where it cannot."""
    if not supports(model):
        return False
    model.encode_text = types.MethodType(encode_text_fitted, model)
    return True
