"""What every benchmark reader produces: test items in one shape, and the items it could not use.

Most compositional benchmarks reduce to one image against K >= 2 texts, the true one first (SugarCrepe,
ARO, VALSE, VL-CheckList, CREPE, the Order sets). A reader never drops an item silently: a record it cannot
use is a `Skip` naming its file, record and reason, and the totals go into the output JSON.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_SKIP_EXAMPLES = 20  # per reason, in the output JSON; the counts are always complete


@dataclass(frozen=True)
class ImageRef:
    """An image file (or tar member), optionally cropped to a box (x, y, w, h) before preprocessing."""

    path: str
    box: tuple[float, float, float, float] | None = None

    def __str__(self) -> str:
        return self.path if self.box is None else f"{self.path} [box {','.join(f'{v:g}' for v in self.box)}]"


@dataclass(frozen=True)
class Choice:
    """One image and its candidate texts, the true one first. Correct iff the true text scores strictly
    highest (a tie counts as wrong, as in SugarCrepe and ARO)."""

    file: str  # the benchmark file's key: its name without extension
    key: str  # the record's id within its file
    image: ImageRef
    texts: tuple[str, ...]
    group: str = ""  # what the benchmark averages over: ARO relation or attribute pair, VALSE piece, ...
    subset: str = ""  # "held_out" / "seen" where the benchmark says (the shapes world does)


@dataclass(frozen=True)
class Skip:
    file: str
    record: str
    reason: str  # missing_image, box_outside_image, missing_key, ...
    detail: str = ""


@dataclass
class Loaded:
    """A benchmark as read: its items, the records it skipped, and per-file facts for the output."""

    benchmark: str
    items: list = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file key -> path read
    notes: dict[str, int] = field(default_factory=dict)  # reader-specific counts for the output
    classnames: list[str] = field(default_factory=list)  # zero-shot classification only
    templates: list[str] = field(default_factory=list)
    # (images folder, relative path, absolute_ok) -> (path or None, skip reason, detail): readers.common.check_image
    image_paths: dict[tuple, tuple] = field(default_factory=dict, repr=False)

    def skip(self, file: str, record, reason: str, detail: str = "") -> None:
        self.skipped.append(Skip(file, str(record), reason, detail))


def skip_summary(skips: list[Skip]) -> dict:
    """Counts per reason (and per file), with the first examples of each reason, for the output JSON."""
    examples: dict[str, list] = {}
    for s in skips:
        bucket = examples.setdefault(s.reason, [])
        if len(bucket) < MAX_SKIP_EXAMPLES:
            bucket.append({"file": s.file, "record": s.record, "detail": s.detail})
    return {"total": len(skips), "by_reason": dict(sorted(Counter(s.reason for s in skips).items())),
            "by_file": dict(sorted(Counter(s.file for s in skips).items())), "examples": examples}
