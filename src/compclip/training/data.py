"""What a training step reads: (image, caption) pairs with their hard negatives and hard positives, and
CLEAR GLASS concept groups. Every distinct text is tokenized once, up front (and kept on disk, see
text.tokens); which items a step sees is a pure function of (seed, step), so a resumed run replays exactly
the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from compclip.data.images import open_image
from compclip.errors import UserError
from compclip.hashing import stable_int, stable_unit
from compclip.names import PLACEHOLDER
from compclip.text.context import context_length
from compclip.text.tokens import tokenize


def crop_box(row) -> tuple[float, float, float, float] | None:
    """The row's box (x, y, w, h) when it has one (Visual Genome regions), else None: the whole image."""
    if isinstance(row.bbox_x, float) and math.isnan(row.bbox_x):
        return None
    return row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h


def load_image(row) -> Image.Image:
    """The row's image, cropped to its box when it has one."""
    img = open_image(row.image_path)
    box = crop_box(row)
    if box is not None:
        x, y, w, h = box
        img = img.crop((x, y, x + w, y + h))
    return img


def negative_texts(path: Path, rows: pd.DataFrame, rules: list[str]) -> tuple[list[list[str]], torch.Tensor]:
    """Per training caption, one negative per rule in `rules` (K columns) and a (n, K) validity mask."""
    table = pd.read_parquet(path, columns=["sample_id", "rule", "negative", "valid"])
    missing = sorted(set(rules) - set(table["rule"]))
    if missing:
        raise UserError(f"{path}: no negatives for rule(s) {missing}; add them to negatives.rules and rerun the stage")
    table = table[table["rule"].isin(rules)].drop_duplicates(["sample_id", "rule"])
    wide = table.pivot(index="sample_id", columns="rule", values=["negative", "valid"])
    absent = rows.loc[~rows["sample_id"].isin(wide.index), "sample_id"]
    if len(absent):
        raise UserError(f"{path}: {len(absent)} training caption(s) have no negatives, e.g. sample_id "
                        f"{absent.iloc[0]!r}; run the negatives stage on split 'train'")
    wide = wide.reindex(rows["sample_id"])
    texts = wide["negative"][rules].fillna(PLACEHOLDER).values.tolist()
    valid = torch.tensor(wide["valid"][rules].fillna(0).astype(int).values == 1)
    return texts, valid


def positive_texts(path: Path, rows: pd.DataFrame, ratio: float, seed: int) -> tuple[list[str], torch.Tensor]:
    """Per training caption at most one hard positive: a stable choice among its rewrites, kept for a
    stable `ratio` share of captions (the paper's 25/50/75/100 variants)."""
    table = pd.read_parquet(path, columns=["sample_id", "positive", "rule"])
    chosen = {}
    for sid, g in table.groupby("sample_id", sort=False):
        if stable_unit(f"{seed}|positive-ratio|{sid}") < ratio:
            chosen[sid] = g["positive"].iloc[stable_int(f"{seed}|positive|{sid}") % len(g)]
    texts = [chosen.get(sid, PLACEHOLDER) for sid in rows["sample_id"]]
    return texts, torch.tensor([sid in chosen for sid in rows["sample_id"]])


def fit_to_context(tokenizer, rows: pd.DataFrame, negatives, positives, policy: str):
    """Count the texts the tokenizer would cut at its context length; with policy "skip", drop the captions
    (their rows) and mask out the negatives and positives that are too long instead of training on a cut.
    Returns (rows, negatives, positives, report)."""
    over_caption = tokenize(tokenizer, rows["caption"].tolist())[1]
    report = {"context_length": context_length(tokenizer), "policy": policy,
              "captions_over": int(over_caption.sum()), "negatives_over": 0, "positives_over": 0, "rows_skipped": 0}
    if negatives is not None:
        texts, valid = negatives
        k = len(texts[0]) if texts else 0
        over = torch.from_numpy(tokenize(tokenizer, [t for row in texts for t in row])[1].reshape(len(texts), k))
        report["negatives_over"] = int((over & valid).sum())
        if policy == "skip":
            negatives = (texts, valid & ~over)
    if positives is not None:
        texts, mask = positives
        over = torch.from_numpy(tokenize(tokenizer, texts)[1])
        report["positives_over"] = int((over & mask).sum())
        if policy == "skip":
            positives = (texts, mask & ~over)
    if policy == "skip" and over_caption.any():
        keep = ~over_caption
        report["rows_skipped"] = int(over_caption.sum())
        rows = rows[keep].reset_index(drop=True)
        if negatives is not None:
            negatives = ([t for t, k in zip(negatives[0], keep) if k], negatives[1][torch.from_numpy(keep)])
        if positives is not None:
            positives = ([t for t, k in zip(positives[0], keep) if k], positives[1][torch.from_numpy(keep)])
    return rows, negatives, positives, report


@dataclass
class ConceptGroups:
    """CLEAR GLASS batches: an anchor concept plus M−1 of its hard-negative concepts, N images each,
    every image with one of its captions (indices into the training rows)."""

    concepts: list[str]
    images: dict[str, list[list[int]]]  # concept -> per image, the row indices of its captions
    negatives: dict[str, list[str]]
    seed: int

    @classmethod
    def load(cls, concepts_dir: Path, rows: pd.DataFrame, seed: int) -> "ConceptGroups":
        concepts_dir = Path(concepts_dir)
        members = pd.read_parquet(concepts_dir / "memberships.parquet", columns=["image_path", "level1"])
        groups = pd.read_parquet(concepts_dir / "groups.parquet")
        train_concepts = set(groups.loc[groups["split"] == "train", "concept"])  # test concepts stay unseen
        whole = rows[rows["bbox_x"].isna()]
        captions = whole.groupby("image_path").indices
        images: dict[str, list[list[int]]] = {}
        for image, concept in sorted(zip(members["image_path"], members["level1"])):
            if concept in train_concepts and image in captions:
                images.setdefault(concept, []).append(sorted(captions[image].tolist()))
        if len(images) < 2:
            raise UserError(f"{concepts_dir}: {len(images)} train concept group(s) with training images; "
                            "clear_glass needs at least 2")
        hn = pd.read_parquet(concepts_dir / "hard_negatives.parquet")
        hn = hn[(hn["level"] == "level1") & hn["concept"].isin(images) & hn["negative"].isin(images)]
        negatives = {c: g.sort_values("similarity", ascending=False)["negative"].tolist()
                     for c, g in hn.groupby("concept")}
        return cls(sorted(images), images, negatives, seed)

    def batch(self, step: int, m: int, n: int) -> list[list[int]]:
        """m groups of n caption-row indices for global step `step`."""
        g = torch.Generator().manual_seed(stable_int(f"{self.seed}|groups|{step}") % 2**63)
        cycle, pos = divmod(step, len(self.concepts))
        order = torch.Generator().manual_seed(stable_int(f"{self.seed}|anchors|{cycle}") % 2**63)
        anchor = self.concepts[torch.randperm(len(self.concepts), generator=order)[pos].item()]
        hard = self.negatives.get(anchor, [])[:]
        picked = [hard[i] for i in torch.randperm(len(hard), generator=g)[:m - 1].tolist()]
        others = [c for c in self.concepts if c != anchor and c not in picked]
        picked += [others[i] for i in torch.randperm(len(others), generator=g)[:m - 1 - len(picked)].tolist()]
        out = []
        for concept in [anchor, *picked]:
            imgs = self.images[concept]
            perm = torch.randperm(len(imgs), generator=g).tolist()
            chosen = [imgs[perm[i % len(imgs)]] for i in range(n)]  # cycle when the concept has < n images
            out.append([caps[torch.randint(len(caps), (1,), generator=g).item()] for caps in chosen])
        return out


class PreprocessedImages:
    """Training images decoded and preprocessed once per process, kept in memory up to a byte budget.

    A training image comes back many times: once per caption (the shapes world and COCO have 3 to 5) and
    once per epoch, and decoding it again gives the same tensor, since the transform is open_clip's
    deterministic one (resize, crop, normalize). Past the budget new images are not kept; a real data set
    far larger than memory reads from disk as before. One instance serves every run of a process (the
    tune stage's trials, the pretrain then fine-tune of a test), keyed by the transform too. The loader's
    worker processes (train.num_workers) each keep their own."""

    def __init__(self, budget_bytes: int = 0):
        self.budget_bytes, self.used_bytes = budget_bytes, 0
        self.tensors: dict[Hashable, torch.Tensor] = {}
        self.hits = self.misses = 0

    def get(self, key: Hashable, make) -> torch.Tensor:
        found = self.tensors.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        tensor = make()
        size = tensor.numel() * tensor.element_size()
        if self.used_bytes + size <= self.budget_bytes:
            self.tensors[key] = tensor
            self.used_bytes += size
        return tensor


_SHARED = PreprocessedImages()


def shared_images(budget_mb: int) -> PreprocessedImages:
    """The process's image cache with a budget of budget_mb; a smaller budget than it holds empties it
    (0: every image is decoded every time)."""
    _SHARED.budget_bytes = budget_mb * 2**20
    if _SHARED.used_bytes > _SHARED.budget_bytes:
        _SHARED.tensors.clear()
        _SHARED.used_bytes = 0
    return _SHARED


class TrainingItems(Dataset):
    """Keys are ("pair", row) or ("group", row): a pair brings its negatives and positive when loaded."""

    def __init__(self, rows: pd.DataFrame, preprocess, tokenizer, negatives=None, positives=None,
                 images: PreprocessedImages | None = None):
        self.rows = list(rows.itertuples(index=False))
        self.preprocess = preprocess
        self.images = images or PreprocessedImages()
        self._transform = repr(preprocess)  # part of the cache key: another model's transform is another tensor
        self.tokens = tokenize(tokenizer, rows["caption"].tolist())[0]
        self.neg_tokens = self.neg_mask = self.pos_tokens = self.pos_mask = None
        if negatives is not None:
            texts, self.neg_mask = negatives
            k = len(texts[0])
            self.neg_tokens = tokenize(tokenizer, [t for row in texts for t in row])[0].reshape(len(texts), k, -1)
        if positives is not None:
            texts, self.pos_mask = positives
            self.pos_tokens = tokenize(tokenizer, texts)[0]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[str, int]) -> dict:
        kind, i = key
        row = self.rows[i]
        image = self.images.get((self._transform, row.image_path, crop_box(row)),
                                lambda: self.preprocess(load_image(row)))
        item = {"kind": kind, "image": image, "text": self.tokens[i]}
        if kind == "pair" and self.neg_tokens is not None:
            item |= {"neg_text": self.neg_tokens[i], "neg_mask": self.neg_mask[i]}
        if kind == "pair" and self.pos_tokens is not None:
            item |= {"pos_text": self.pos_tokens[i], "pos_mask": self.pos_mask[i]}
        return item


@dataclass
class BatchPlan:
    """The shape of one step on one process: b pairs and m groups of n (global sizes / world_size)."""

    pairs: int
    groups: int = 0
    group_size: int = 0


def collate(items: list[dict], plan: BatchPlan) -> dict[str, torch.Tensor]:
    pairs = [it for it in items if it["kind"] == "pair"]
    groups = [it for it in items if it["kind"] == "group"]
    batch = {}
    if pairs:
        batch = {k: torch.stack([it[k] for it in pairs]) for k in pairs[0] if k != "kind"}
    if groups:
        m, n = plan.groups, plan.group_size
        batch["group_image"] = torch.stack([it["image"] for it in groups]).reshape(m, n, *groups[0]["image"].shape)
        batch["group_text"] = torch.stack([it["text"] for it in groups]).reshape(m, n, -1)
    return batch


class StepBatches(torch.utils.data.Sampler):
    """One epoch of steps from `start_batch` on. Pairs follow the epoch's seeded permutation (the last
    partial batch is dropped); groups come from ConceptGroups.batch(global step). Each process takes its
    contiguous shard, so the gathered global batch equals the one-process batch."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start_batch: int = 0, *,
                 with_pairs: bool = True, groups: ConceptGroups | None = None, groups_per_batch: int = 0,
                 group_size: int = 0, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.epoch, self.start_batch = n, batch_size, epoch, start_batch
        self.with_pairs, self.groups, self.m, self.group_size = with_pairs, groups, groups_per_batch, group_size
        self.rank, self.world_size = rank, world_size
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(n, generator=g).tolist()

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_batch

    def __iter__(self):
        b_local, m_local = self.batch_size // self.world_size, self.m // self.world_size
        for b in range(self.start_batch, self.steps_per_epoch):
            keys = []
            if self.with_pairs:
                start = b * self.batch_size + self.rank * b_local
                keys += [("pair", i) for i in self.order[start:start + b_local]]
            if self.groups is not None:
                step = self.epoch * self.steps_per_epoch + b
                mine = self.groups.batch(step, self.m, self.group_size)[self.rank * m_local:(self.rank + 1) * m_local]
                keys += [("group", i) for group in mine for i in group]
            yield keys
