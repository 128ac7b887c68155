"""Encode each unique image and caption once; every score is a dot product of cached embeddings.

An image that cannot be read (missing, corrupt) is not fatal: it is recorded in `failed` with its reason,
and scorers leave out the items that need it (`usable`), counting them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from compclip.data.images import ImageProblem, open_image
from compclip.models.factory import ClipBundle


class EmbeddingCache:
    def __init__(self, bundle: ClipBundle, device: torch.device | str = "cpu", batch_size: int = 256):
        self.bundle, self.device, self.batch_size = bundle, torch.device(device), batch_size
        self.images: dict[str, torch.Tensor] = {}
        self.texts: dict[str, torch.Tensor] = {}
        self.failed: dict[str, str] = {}  # image path -> why it could not be used
        bundle.model.eval()

    @torch.no_grad()
    def _fill(self, keys: Iterable[str], cache: dict, encode, desc: str) -> None:
        todo = list(dict.fromkeys(k for k in keys if k not in cache and k not in self.failed))
        for i in tqdm(range(0, len(todo), self.batch_size), desc=desc, disable=len(todo) < self.batch_size):
            done, features = encode(todo[i:i + self.batch_size])
            for k, e in zip(done, features.float().cpu()):
                cache[k] = e

    def _encode_images(self, paths: list[str]) -> tuple[list[str], torch.Tensor]:
        done, pixels = [], []
        for p in paths:
            try:
                pixels.append(self.bundle.preprocess(open_image(p)))
                done.append(p)
            except ImageProblem as e:
                self.failed[p] = e.reason
        if not done:
            return done, torch.empty(0)
        return done, self.bundle.model.encode_image(torch.stack(pixels).to(self.device), normalize=True)

    def _encode_texts(self, captions: list[str]) -> tuple[list[str], torch.Tensor]:
        return captions, self.bundle.model.encode_text(self.bundle.tokenizer(captions).to(self.device), normalize=True)

    def usable(self, paths: list[str]) -> np.ndarray:
        """Which of these images could be encoded (encoding them now if needed)."""
        self._fill(paths, self.images, self._encode_images, "encode images")
        return np.array([p in self.images for p in paths], dtype=bool)

    def skipped(self, paths: list[str] | None = None) -> dict[str, int]:
        """How many of these items (default: all images seen so far) were left out, by reason."""
        reasons = self.failed.values() if paths is None else (self.failed[p] for p in paths if p in self.failed)
        return dict(sorted(Counter(reasons).items()))

    def image_matrix(self, paths: list[str]) -> torch.Tensor:
        self._fill(paths, self.images, self._encode_images, "encode images")
        missing = [p for p in paths if p not in self.images]
        if missing:
            raise ValueError(f"{missing[0]}: {self.failed.get(missing[0], 'not encoded')}; filter with usable() first")
        return torch.stack([self.images[p] for p in paths])

    def text_matrix(self, captions: list[str]) -> torch.Tensor:
        self._fill(captions, self.texts, self._encode_texts, "encode texts")
        return torch.stack([self.texts[c] for c in captions])
