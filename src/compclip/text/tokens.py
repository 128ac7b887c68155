"""Token ids of many texts, each distinct text tokenized once.

open_clip's tokenizer is pure Python (ftfy, regex, BPE): a training run's 85k captions and negatives cost
about 10 s each time they are tokenized, and every train@, tune trial and pretrain run reads the same
texts. `tokenize` tokenizes each distinct text once, one token wider than the context so that the same
pass tells which texts the context cuts, and keeps the result on disk by content: one SQLite file per
tokenizer (its class, vocabulary size and context length) under `$COMPCLIP_CACHE` (default
`~/.cache/compclip`), keyed by a hash of the text. A changed tokenizer gets another file, never stale ids.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from compclip.cache import cache_root



def context_length(tokenizer) -> int:
    return int(tokenizer.context_length)


def pad_id(tokenizer) -> int:
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a transformers tokenizer
    pad = getattr(inner, "pad_token_id", None)
    return 0 if pad is None else int(pad)


FORMAT = 2  # of the files: int32 ids


def tokenizer_id(tokenizer) -> str:
    """What the ids depend on: the tokenizer's class, vocabulary, cleaning, special tokens and context."""
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a transformers tokenizer
    parts = [f"{type(tokenizer).__module__}.{type(tokenizer).__name__}", context_length(tokenizer),
             getattr(tokenizer, "vocab_size", None), getattr(inner, "name_or_path", None),
             getattr(getattr(tokenizer, "clean_fn", None), "__name__", None),
             getattr(getattr(tokenizer, "reduction_fn", None), "__name__", None),
             getattr(tokenizer, "sot_token_id", None), getattr(tokenizer, "eot_token_id", None)]
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class TokenStore:
    """(token ids cut to the context, over the context?) per text hash, for one tokenizer."""

    def __init__(self, root: Path, tokenizer):
        root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / f"tokens-v{FORMAT}-{tokenizer_id(tokenizer)}.sqlite", timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS tok (key TEXT PRIMARY KEY, ids BLOB, over INTEGER)")

    def get(self, keys: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
        out = {}
        for i in range(0, len(keys), 900):
            chunk = keys[i:i + 900]
            rows = self.db.execute(f"SELECT key, ids, over FROM tok WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            out |= {k: (np.frombuffer(ids, dtype=np.int32), bool(over)) for k, ids, over in rows}
        return out

    def put(self, rows: dict[str, tuple[np.ndarray, bool]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO tok VALUES (?, ?, ?)",
                                [(k, np.ascontiguousarray(ids, dtype=np.int32).tobytes(), int(over))
                                 for k, (ids, over) in rows.items()])


def _tokenize_fresh(tokenizer, texts: list[str]) -> tuple[torch.Tensor, np.ndarray]:
    limit = context_length(tokenizer)
    wide = tokenizer(texts, context_length=limit + 1)
    over = (wide[:, limit] != pad_id(tokenizer)).numpy()
    tokens = wide[:, :limit].clone()
    if over.any():  # the tokenizer's own cut (it ends a cut text with its end token)
        idx = np.flatnonzero(over)
        tokens[torch.from_numpy(idx)] = tokenizer([texts[i] for i in idx])
    return tokens, over


_MEMORY: dict[str, dict[str, tuple[np.ndarray, bool]]] = {}  # per tokenizer: what this process has seen


def tokenize(tokenizer, texts: Sequence[str], cache: Path | None | bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """(n, context) token ids exactly as `tokenizer(texts)` gives them, and which texts the context cut.

    cache: True for the default folder, a folder, or False/None for none (this process still remembers)."""
    distinct = list(dict.fromkeys(texts))
    keys = [_key(t) for t in distinct]
    memory = _MEMORY.setdefault(tokenizer_id(tokenizer), {})
    found = {k: memory[k] for k in keys if k in memory}
    missing = [k for k in keys if k not in found]
    store = TokenStore(cache_root() if cache is True else Path(cache), tokenizer) if cache and missing else None
    if store:
        found |= store.get(missing)
    todo = [i for i, k in enumerate(keys) if k not in found]
    if todo:
        fresh, over = _tokenize_fresh(tokenizer, [distinct[i] for i in todo])
        new = {keys[i]: (fresh[j].numpy().astype(np.int32), bool(over[j])) for j, i in enumerate(todo)}
        found |= new
        if store:
            store.put(new)
    memory.update(found)
    limit = context_length(tokenizer)
    # int32 in memory and on disk (ids < 2^31), int64 out, as the tokenizer gives them
    table = torch.from_numpy(np.stack([found[k][0] for k in keys]).astype(np.int64)) if keys else \
        torch.zeros(0, limit, dtype=torch.long)
    flags = np.array([found[k][1] for k in keys], dtype=bool)
    index = {t: i for i, t in enumerate(distinct)}
    rows = torch.tensor([index[t] for t in texts], dtype=torch.long)
    return table[rows], flags[rows.numpy()]
