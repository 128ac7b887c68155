"""Ingest: every source record ends in the manifest or in the quarantine, never nowhere.

read == kept + quarantined is checked before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from compclip.data.cc3m import read_cc3m
from compclip.data.coco import read_coco
from compclip.data.images import ImageProblem, decode, read_bytes
from compclip.data.quarantine import Quarantine, Rejected
from compclip.data.records import Candidate
from compclip.data.vg import read_vg
from compclip.errors import UserError
from compclip.hashing import stable_unit

COLUMNS = ["sample_id", "source", "image_id", "image_path", "caption", "split",
           "bbox_x", "bbox_y", "bbox_w", "bbox_h", "source_file", "record_key"]


def hash_split(source: str, image_key: str, fractions: dict[str, float]) -> str:
    """A stable split from the image's identity, so all captions of an image land together."""
    u = stable_unit(f"{source}:{image_key}")
    edge = 0.0
    for split in ("val", "test"):
        edge += fractions.get(split, 0.0)
        if u < edge:
            return split
    return "train"


class ImageChecker:
    """Decodes each image once, however many captions point at it."""

    def __init__(self, verify: bool):
        self.verify = verify
        self.seen: dict[str, ImageProblem | None] = {}

    def problem(self, path: str) -> ImageProblem | None:
        if path not in self.seen:
            try:
                data = read_bytes(path)
                if self.verify:
                    decode(data, path)
                self.seen[path] = None
            except ImageProblem as p:
                self.seen[path] = p
        return self.seen[path]


def _check(c: Candidate, max_words: int, images: ImageChecker) -> Rejected | None:
    if not isinstance(c.caption, str):
        return Rejected(c.source, c.file, c.key, "malformed_record", f"caption is {type(c.caption).__name__}, not text")
    words = c.caption.split()
    if not words:
        return Rejected(c.source, c.file, c.key, "empty_caption", repr(c.caption))
    if len(words) > max_words:
        return Rejected(c.source, c.file, c.key, "caption_too_long", f"{len(words)} words > {max_words}")
    p = images.problem(c.image_path)
    if p is not None:
        return Rejected(c.source, c.file, c.key, p.reason, p.detail)
    return None


def build_manifest(records: Iterable[Candidate | Rejected], max_caption_words: int, verify_images: bool,
                   split_fractions: dict[str, float]) -> tuple[pd.DataFrame, Quarantine]:
    quarantine, rows, read = Quarantine(), [], 0
    images = ImageChecker(verify_images)
    seen_ids: set[str] = set()
    seen_pairs: set[tuple[str, str]] = set()
    image_split: dict[str, str] = {}
    for rec in tqdm(records, desc="ingest", unit="rec"):
        read += 1
        if isinstance(rec, Rejected):
            quarantine.add(rec)
            continue
        problem = _check(rec, max_caption_words, images)
        if problem:
            quarantine.add(problem)
            continue
        caption = " ".join(rec.caption.split())
        sample_id = f"{rec.source}:{rec.key}"
        pair = (rec.image_path if rec.bbox is None else f"{rec.image_path}@{rec.bbox}", caption.lower())
        if sample_id in seen_ids or pair in seen_pairs:
            what = "record id" if sample_id in seen_ids else "image and caption"
            quarantine.add(Rejected(rec.source, rec.file, rec.key, "duplicate", f"same {what} as an earlier record"))
            continue
        split = rec.split or hash_split(rec.source, rec.image_key, split_fractions)
        first = image_split.setdefault(rec.image_path, split)
        if first != split:
            quarantine.add(Rejected(rec.source, rec.file, rec.key, "image_in_two_splits",
                                    f"{rec.image_path} is already in split {first!r}, this record says {split!r}"))
            continue
        seen_ids.add(sample_id)
        seen_pairs.add(pair)
        x, y, w, h = rec.bbox if rec.bbox else (None,) * 4
        rows.append((sample_id, rec.source, rec.image_key, rec.image_path, caption, split, x, y, w, h,
                     rec.file, rec.key))
    frame = pd.DataFrame(rows, columns=COLUMNS).astype(
        {c: "float64" for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")})
    if read != len(frame) + len(quarantine):  # the contract of this stage; a bug if it ever fires
        raise AssertionError(f"ingest lost records: read {read}, kept {len(frame)}, quarantined {len(quarantine)}")
    return frame, quarantine


def read_sources(coco: Iterable[tuple[Path, Path, str | None]], vg: Iterable[Path],
                 cc3m: Iterable[Path]) -> Iterator[Candidate | Rejected]:
    for captions, images, split in coco:
        yield from read_coco(captions, images, split)
    for d in vg:
        yield from read_vg(d)
    for p in cc3m:
        yield from read_cc3m(p)


def write_outputs(frame: pd.DataFrame, quarantine: Quarantine, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out_dir / "manifest.parquet", index=False)
    quarantine.write(out_dir / "quarantine.jsonl")
    summary = {"read": len(frame) + len(quarantine), "kept": len(frame), "quarantined": len(quarantine),
               "by_reason": quarantine.by_reason(),
               "by_split": {k: int(v) for k, v in frame["split"].value_counts().sort_index().items()},
               "by_source": {k: int(v) for k, v in frame["source"].value_counts().sort_index().items()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def ingest(coco, vg, cc3m, out_dir: Path, max_caption_words: int = 64, verify_images: bool = True,
           split_fractions: dict[str, float] | None = None) -> dict:
    frame, quarantine = build_manifest(read_sources(coco, vg, cc3m), max_caption_words, verify_images,
                                       split_fractions or {"val": 0.05, "test": 0.0})
    return write_outputs(frame, quarantine, out_dir)


def load_split(manifest_path, split: str) -> pd.DataFrame:
    frame = pd.read_parquet(manifest_path)
    rows = frame[frame["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise UserError(f"{manifest_path}: no rows in split {split!r} (splits present: {sorted(frame['split'].unique())})")
    return rows
