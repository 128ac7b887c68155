"""Manifest rows as (image tensor, token ids) pairs. Captions are tokenized once, up front."""

from __future__ import annotations

import math

import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from compclip.data.images import open_image


def load_split(manifest_path, split: str) -> pd.DataFrame:
    frame = pd.read_parquet(manifest_path)
    rows = frame[frame["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"{manifest_path}: no rows in split {split!r} (splits present: {sorted(frame['split'].unique())})")
    return rows


def load_image(row) -> Image.Image:
    """The row's image, cropped to its box when it has one (Visual Genome regions)."""
    img = open_image(row.image_path)
    if not (isinstance(row.bbox_x, float) and math.isnan(row.bbox_x)):
        img = img.crop((row.bbox_x, row.bbox_y, row.bbox_x + row.bbox_w, row.bbox_y + row.bbox_h))
    return img


class PairDataset(Dataset):
    def __init__(self, rows: pd.DataFrame, preprocess, tokenizer):
        self.rows = list(rows.itertuples(index=False))
        self.preprocess = preprocess
        self.tokens = tokenizer(rows["caption"].tolist())

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.preprocess(load_image(self.rows[i])), self.tokens[i]


class EpochBatches(torch.utils.data.Sampler):
    """Batches of one epoch's seeded permutation, from a given batch on: resuming mid-epoch replays
    exactly the batches an uninterrupted run would have seen. The last partial batch is dropped."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start_batch: int = 0):
        self.n, self.batch_size, self.start_batch = n, batch_size, start_batch
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(n, generator=g).tolist()

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start_batch

    def __iter__(self):
        for b in range(self.start_batch, self.n // self.batch_size):
            yield self.order[b * self.batch_size:(b + 1) * self.batch_size]
