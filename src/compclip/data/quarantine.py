"""Records that cannot be used are never dropped silently: they are kept here with their reason."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

REASONS = (
    "missing_image", "corrupt_image", "empty_caption", "caption_too_long", "malformed_record",
    "path_outside_root", "duplicate", "image_in_two_splits", "truncated_shard",
)


@dataclass(frozen=True)
class Rejected:
    source: str
    file: str
    key: str
    reason: str
    detail: str = ""

    def __post_init__(self):
        if self.reason not in REASONS:
            raise ValueError(f"unknown quarantine reason {self.reason!r}")


class Quarantine:
    def __init__(self):
        self.entries: list[Rejected] = []

    def add(self, entry: Rejected) -> None:
        self.entries.append(entry)

    def __len__(self) -> int:
        return len(self.entries)

    def by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(e.reason for e in self.entries).items()))

    def write(self, path: Path) -> None:
        with open(path, "w") as f:
            for e in self.entries:
                f.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
