"""Ingest: every source record ends in the manifest or in the quarantine, never nowhere.

read == kept + quarantined is checked before anything is written, for the whole run and per source (each
captions file, VG folder or CC3M path given). A source that keeps nothing, or loses more than
`max_quarantine_fraction` of its records, fails the run after the quarantine is written: a wrong folder
or a format the readers do not know must not pass as a small dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
    """Decodes each image once, however many captions point at it, and keeps a digest of its bytes: the
    same picture under two paths (two CC3M folders) is one image for duplicate detection."""

    def __init__(self, verify: bool):
        self.verify = verify
        self.seen: dict[str, ImageProblem | str] = {}

    def problem(self, path: str) -> ImageProblem | None:
        if path not in self.seen:
            try:
                data = read_bytes(path)
                if self.verify:
                    decode(data, path)
                self.seen[path] = hashlib.blake2b(data, digest_size=16).hexdigest()
            except ImageProblem as p:
                self.seen[path] = p
        found = self.seen[path]
        return found if isinstance(found, ImageProblem) else None

    def digest(self, path: str) -> str:
        return self.seen[path]


@dataclass
class SourceTally:
    """What one source (a captions file, a VG folder, a CC3M path) gave."""

    read: int = 0
    kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    adjusted: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "quarantined": self.read - self.kept,
                "by_reason": dict(self.reasons.most_common()), "adjusted": dict(sorted(self.adjusted.items()))}


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


def _keep(rec: Candidate, max_caption_words: int, images: ImageChecker, split_fractions: dict[str, float],
          seen_ids: set[str], seen_pairs: set[tuple[str, str]], image_split: dict[str, str]) -> Rejected | tuple:
    """The manifest row of a record, or why it is quarantined."""
    problem = _check(rec, max_caption_words, images)
    if problem:
        return problem
    caption = " ".join(rec.caption.split())
    sample_id = f"{rec.source}:{rec.key}"
    image = images.digest(rec.image_path)
    pair = (image if rec.bbox is None else f"{image}@{rec.bbox}", caption.lower())
    if sample_id in seen_ids or pair in seen_pairs:
        what = "record id" if sample_id in seen_ids else "image (same bytes) and caption"
        return Rejected(rec.source, rec.file, rec.key, "duplicate", f"same {what} as an earlier record")
    split = rec.split or hash_split(rec.source, rec.image_key, split_fractions)
    first = image_split.setdefault(rec.image_path, split)
    if first != split:
        return Rejected(rec.source, rec.file, rec.key, "image_in_two_splits",
                        f"{rec.image_path} is already in split {first!r}, this record says {split!r}")
    seen_ids.add(sample_id)
    seen_pairs.add(pair)
    x, y, w, h = rec.bbox if rec.bbox else (None,) * 4
    return (sample_id, rec.source, rec.image_key, rec.image_path, caption, split, x, y, w, h, rec.file, rec.key)


def build_manifest(records: Iterable[tuple[str, Candidate | Rejected]], max_caption_words: int, verify_images: bool,
                   split_fractions: dict[str, float]) -> tuple[pd.DataFrame, Quarantine, dict[str, SourceTally]]:
    """(origin, record) pairs -> the manifest, the quarantine, and a tally per origin."""
    quarantine, rows, read = Quarantine(), [], 0
    tallies: dict[str, SourceTally] = {}
    images = ImageChecker(verify_images)
    seen_ids: set[str] = set()
    seen_pairs: set[tuple[str, str]] = set()
    image_split: dict[str, str] = {}
    for origin, rec in tqdm(records, desc="ingest", unit="rec"):
        read += 1
        tally = tallies.setdefault(origin, SourceTally())
        tally.read += 1
        row = rec if isinstance(rec, Rejected) else _keep(rec, max_caption_words, images, split_fractions,
                                                          seen_ids, seen_pairs, image_split)
        if isinstance(row, Rejected):
            quarantine.add(row)
            tally.reasons[row.reason] += 1
            continue
        tally.kept += 1
        if rec.adjusted:
            tally.adjusted[rec.adjusted] += 1
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS).astype(
        {c: "float64" for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")})
    if read != len(frame) + len(quarantine):  # the contract of this stage; a bug if it ever fires
        raise AssertionError(f"ingest lost records: read {read}, kept {len(frame)}, quarantined {len(quarantine)}")
    return frame, quarantine, tallies


def origins(coco, vg, cc3m) -> list[str]:
    """Each source as the user gave it: the label of its records' tally."""
    return [f"coco {c}" for c, _, _ in coco] + [f"vg {d}" for d in vg] + [f"cc3m {p}" for p in cc3m]


def read_sources(coco: Iterable[tuple[Path, Path, str | None]], vg: Iterable[Path],
                 cc3m: Iterable[Path]) -> Iterator[tuple[str, Candidate | Rejected]]:
    """(origin, record) for every record of every source."""
    for captions, images, split in coco:
        yield from ((f"coco {captions}", r) for r in read_coco(captions, images, split))
    for d in vg:
        yield from ((f"vg {d}", r) for r in read_vg(d))
    for p in cc3m:
        yield from ((f"cc3m {p}", r) for r in read_cc3m(p))


def write_outputs(frame: pd.DataFrame, quarantine: Quarantine, tallies: dict[str, SourceTally], out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out_dir / "manifest.parquet", index=False)
    quarantine.write(out_dir / "quarantine.jsonl")
    adjusted = sum((t.adjusted for t in tallies.values()), Counter())
    summary = {"read": len(frame) + len(quarantine), "kept": len(frame), "quarantined": len(quarantine),
               "by_reason": quarantine.by_reason(), "adjusted": dict(sorted(adjusted.items())),
               "by_split": {k: int(v) for k, v in frame["split"].value_counts().sort_index().items()},
               "by_source": {k: int(v) for k, v in frame["source"].value_counts().sort_index().items()},
               "by_origin": {origin: t.as_dict() for origin, t in tallies.items()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def check_sources(tallies: dict[str, SourceTally], max_quarantine_fraction: float, quarantine_file: Path) -> None:
    """Fail on a source that kept nothing or lost more than the allowed share, naming its top reasons."""
    bad = []
    for origin, t in tallies.items():
        lost = (t.read - t.kept) / max(1, t.read)
        if t.kept == 0 or lost > max_quarantine_fraction:
            reasons = ", ".join(f"{r} {n}" for r, n in t.reasons.most_common(3))
            bad.append(f"{origin}: kept {t.kept} of {t.read} records ({lost:.0%} quarantined; top reasons: "
                       f"{reasons or 'none'})")
    if bad:
        raise UserError("ingest: " + "; ".join(bad) + f". Limit: ingest.max_quarantine_fraction="
                        f"{max_quarantine_fraction}; every quarantined record, with its reason, is in "
                        f"{quarantine_file}")


def ingest(coco, vg, cc3m, out_dir: Path, max_caption_words: int = 64, verify_images: bool = True,
           split_fractions: dict[str, float] | None = None, max_quarantine_fraction: float = 0.5) -> dict:
    coco, vg, cc3m = list(coco), list(vg), list(cc3m)
    frame, quarantine, tallies = build_manifest(read_sources(coco, vg, cc3m), max_caption_words, verify_images,
                                                split_fractions or {"val": 0.05, "test": 0.0})
    tallies = {o: tallies.get(o, SourceTally()) for o in origins(coco, vg, cc3m)}  # a source with no records too
    summary = write_outputs(frame, quarantine, tallies, out_dir)
    check_sources(tallies, max_quarantine_fraction, Path(out_dir) / "quarantine.jsonl")
    return summary


def load_split(manifest_path, split: str) -> pd.DataFrame:
    frame = pd.read_parquet(manifest_path)
    rows = frame[frame["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise UserError(f"{manifest_path}: no rows in split {split!r} (splits present: {sorted(frame['split'].unique())})")
    return rows
