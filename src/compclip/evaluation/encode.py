"""The scoring engine's encoder: each unique image (or crop) and text is encoded once per model, batched with
a progress bar; every score is a dot product of the cached, normalized embeddings.

With a `store` folder the embeddings are also kept on disk, in one SQLite file per model named by the
digest of its weights (and preprocessing and context length), keyed by a hash of the input: the image
file's bytes and crop box, or the text. A second evaluation of the same model, or of another benchmark
that shares images, encodes nothing it has seen; a changed model or image gets new keys and never a stale
embedding.

An image that cannot be read (missing, corrupt) is not fatal: it is recorded in `failed` with its reason,
and scorers leave out the items that need it (`usable`), counting them."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from compclip.data.images import ImageProblem, decode, read_bytes
from compclip.evaluation.items import ImageRef
from compclip.models.factory import ClipBundle
from compclip.text.tokens import pad_id, tokenize


def model_digest(bundle: ClipBundle) -> str:
    """What an embedding depends on besides its input: the weights, the image transform, the tokenizer."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{bundle.name}|{bundle.preprocess}|{getattr(bundle.tokenizer, 'context_length', '')}".encode())
    for name, tensor in sorted(bundle.model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _key(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(len(p).to_bytes(8, "little") + p)
    return h.hexdigest()


class EmbeddingStore:
    """Embeddings on disk: <root>/<model digest>.sqlite, one row per (kind, input hash)."""

    def __init__(self, root: Path, digest: str):
        Path(root).mkdir(parents=True, exist_ok=True)
        self.path = Path(root) / f"{digest}.sqlite"
        self.db = sqlite3.connect(self.path)
        self.db.execute("CREATE TABLE IF NOT EXISTS emb (kind TEXT, key TEXT, vec BLOB, PRIMARY KEY (kind, key))")

    def get(self, kind: str, keys: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self.db.execute(f"SELECT key, vec FROM emb WHERE kind = ? AND key IN ({','.join('?' * len(chunk))})",
                                   [kind, *chunk])
            out |= {k: np.frombuffer(v, dtype=np.float32) for k, v in rows}
        return out

    def put(self, kind: str, rows: dict[str, np.ndarray]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                                [(kind, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in rows.items()])


def _as_ref(image: ImageRef | str) -> ImageRef:
    return image if isinstance(image, ImageRef) else ImageRef(image)


class EmbeddingCache:
    def __init__(self, bundle: ClipBundle, device: torch.device | str = "cpu", batch_size: int = 256,
                 store: Path | None = None):
        self.bundle, self.device, self.batch_size = bundle, torch.device(device), batch_size
        self.images: dict[ImageRef, torch.Tensor] = {}
        self.texts: dict[str, torch.Tensor] = {}
        self.failed: dict[ImageRef, str] = {}  # image -> why it could not be used
        self.counts = Counter()  # encoded / from_disk, per kind: what the store saved
        self.store = EmbeddingStore(store, model_digest(bundle)) if store is not None else None
        bundle.model.eval()

    @torch.no_grad()
    def _fill(self, keys: Iterable, cache: dict, hasher, prepare, encode, kind: str) -> None:
        """hasher: keys -> [(key, input hash, payload)] of those that can be read; prepare: the rows not on
        disk -> [(key, input hash, model input)] of those that can be decoded; encode: inputs -> embeddings."""
        todo = list(dict.fromkeys(k for k in keys if k not in cache and k not in self.failed))
        for i in tqdm(range(0, len(todo), self.batch_size), desc=f"encode {kind}", disable=len(todo) < self.batch_size):
            rows = hasher(todo[i:i + self.batch_size])
            known = self.store.get(kind, [h for _, h, _ in rows]) if self.store else {}
            for k, h, _ in rows:
                if h in known:
                    cache[k] = torch.from_numpy(known[h].copy())
            fresh = prepare([r for r in rows if r[1] not in known])
            self.counts[f"{kind}/from_disk"] += sum(h in known for _, h, _ in rows)
            self.counts[f"{kind}/encoded"] += len(fresh)
            if not fresh:
                continue
            features = encode([x for _, _, x in fresh]).float().cpu()
            for (k, _, _), e in zip(fresh, features):
                cache[k] = e
            if self.store:
                self.store.put(kind, {h: e.numpy() for (_, h, _), e in zip(fresh, features)})

    def _hash_images(self, refs: list[ImageRef]) -> list[tuple]:
        out = []
        for ref in refs:
            try:
                data = read_bytes(ref.path)
            except ImageProblem as e:
                self.failed[ref] = e.reason
                continue
            box = b"" if ref.box is None else np.asarray(ref.box, dtype=np.float64).tobytes()
            out.append((ref, _key(data, box), data))
        return out

    def _prepare_images(self, rows: list[tuple]) -> list[tuple]:
        out = []
        for ref, h, data in rows:
            try:
                img = decode(data, ref.path)
            except ImageProblem as e:
                self.failed[ref] = e.reason
                continue
            if ref.box is not None:
                x, y, w, h_ = ref.box
                img = img.crop((x, y, x + w, y + h_))  # as ARO and CREPE crop (PIL pads outside the image)
            out.append((ref, h, self.bundle.preprocess(img)))
        return out

    def _images(self, refs: list[ImageRef]) -> None:
        self._fill(refs, self.images, self._hash_images, self._prepare_images,
                   lambda px: self.bundle.model.encode_image(torch.stack(px).to(self.device), normalize=True), "images")

    def _texts(self, captions: list[str]) -> None:
        todo = [c for c in dict.fromkeys(captions) if c not in self.texts]
        if not todo:
            return
        tokens = tokenize(self.bundle.tokenizer, todo)[0]
        ids = dict(zip(todo, tokens))
        # texts the context cut to the same ids are one input: encoded once, so the model ties them exactly
        first = {}
        for c in todo:
            first.setdefault(ids[c].numpy().tobytes(), c)
        unique = list(first.values())
        # batches of similar length: each is encoded only up to its longest text (models.text_length)
        length = dict(zip(unique, (torch.stack([ids[c] for c in unique]) != pad_id(self.bundle.tokenizer)).sum(1).tolist()))
        unique.sort(key=length.__getitem__)
        self._fill(unique, self.texts, lambda b: [(c, _key(c.encode()), c) for c in b], lambda rows: rows,
                   lambda xs: self.bundle.model.encode_text(torch.stack([ids[c] for c in xs]).to(self.device),
                                                            normalize=True),
                   "texts")
        for c in todo:
            rep = first[ids[c].numpy().tobytes()]
            if c not in self.texts and rep in self.texts:
                self.texts[c] = self.texts[rep]

    def usable(self, images: list[ImageRef | str]) -> np.ndarray:
        """Which of these images could be encoded (encoding them now if needed)."""
        refs = [_as_ref(i) for i in images]
        self._images(refs)
        return np.array([r in self.images for r in refs], dtype=bool)

    def skipped(self, images: list[ImageRef | str] | None = None) -> dict[str, int]:
        """How many of these images (default: all seen so far) were left out, by reason."""
        reasons = self.failed.values() if images is None else \
            (self.failed[r] for r in map(_as_ref, images) if r in self.failed)
        return dict(sorted(Counter(reasons).items()))

    def image_matrix(self, images: list[ImageRef | str]) -> torch.Tensor:
        refs = [_as_ref(i) for i in images]
        self._images(refs)
        missing = [r for r in refs if r not in self.images]
        if missing:
            raise ValueError(f"{missing[0]}: {self.failed.get(missing[0], 'not encoded')}; filter with usable() first")
        return torch.stack([self.images[r] for r in refs])

    def text_matrix(self, captions: list[str]) -> torch.Tensor:
        self._texts(captions)
        return torch.stack([self.texts[c] for c in captions])
