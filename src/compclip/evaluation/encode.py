"""Encode each unique image and caption once; every score is a dot product of cached embeddings."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tqdm import tqdm

from compclip.data.images import open_image
from compclip.models.factory import ClipBundle


class EmbeddingCache:
    def __init__(self, bundle: ClipBundle, device: torch.device | str = "cpu", batch_size: int = 256):
        self.bundle, self.device, self.batch_size = bundle, torch.device(device), batch_size
        self.images: dict[str, torch.Tensor] = {}
        self.texts: dict[str, torch.Tensor] = {}
        bundle.model.eval()

    @torch.no_grad()
    def _fill(self, keys: Iterable[str], cache: dict, encode, desc: str) -> None:
        todo = list(dict.fromkeys(k for k in keys if k not in cache))
        for i in tqdm(range(0, len(todo), self.batch_size), desc=desc, disable=len(todo) < self.batch_size):
            chunk = todo[i:i + self.batch_size]
            for k, e in zip(chunk, encode(chunk).float().cpu()):
                cache[k] = e

    def _encode_images(self, paths: list[str]) -> torch.Tensor:
        batch = torch.stack([self.bundle.preprocess(open_image(p)) for p in paths]).to(self.device)
        return self.bundle.model.encode_image(batch, normalize=True)

    def _encode_texts(self, captions: list[str]) -> torch.Tensor:
        return self.bundle.model.encode_text(self.bundle.tokenizer(captions).to(self.device), normalize=True)

    def image_matrix(self, paths: list[str]) -> torch.Tensor:
        self._fill(paths, self.images, self._encode_images, "encode images")
        return torch.stack([self.images[p] for p in paths])

    def text_matrix(self, captions: list[str]) -> torch.Tensor:
        self._fill(captions, self.texts, self._encode_texts, "encode texts")
        return torch.stack([self.texts[c] for c in captions])
