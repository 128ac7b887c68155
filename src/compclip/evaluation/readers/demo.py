"""The demo's own benchmark files, written by the benchmarks stage (evaluation/benchmarks.py):

- hard_positives.json: a list of {source, key, image_path, rule, true_caption, positive_caption,
  false_caption}: Kamath et al.'s (c, c_n) and (c_p, c_n) pairs in one item (REFERENCE §6);
- abstraction.json: a list of {image_path, distractor_path, texts: {level: text}, distractor_texts}:
  CLEAR GLASS's 2-way test per abstraction level (REFERENCE §7.3).

Image paths in them are relative to `images` (the repository root in the demo), or absolute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compclip.data.records import expect, load_json
from compclip.evaluation.items import Choice, ImageRef, Loaded
from compclip.evaluation.readers.common import check_image, data_files


@dataclass(frozen=True)
class LevelPair:
    file: str
    key: str
    image: ImageRef
    distractor: ImageRef
    own: str
    other: str
    group: str  # the abstraction level


def read_hard_positives(data: Path, images: Path) -> Loaded:
    """Items as Choice with texts (c, c_n, c_p), grouped by the SugarCrepe file the pair came from."""
    loaded = Loaded("hard-positives")
    for path in data_files(data, "hard_positives*.json", "the benchmarks stage's hard_positives.json"):
        file = path.stem
        loaded.files[file] = str(path)
        for i, rec in enumerate(expect(load_json(path), list, path, "a JSON list of items")):
            keys = ("true_caption", "false_caption", "positive_caption")
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in keys):
                loaded.skip(file, i, "missing_key", f"needs {', '.join(keys)}")
                continue
            image = check_image(loaded, file, i, images, rec.get("image_path"), absolute_ok=True)
            if image is not None:
                loaded.items.append(Choice(file, str(i), image, tuple(rec[k] for k in keys),
                                           str(rec.get("source", ""))))
    return loaded


def read_abstraction(data: Path, images: Path) -> Loaded:
    """One LevelPair per (item, level) whose two texts differ: at a level where both images have the same
    text ("shape") the test cannot be passed, and those are counted (`same_text_at_level`), not scored."""
    loaded = Loaded("abstraction")
    same = 0
    for path in data_files(data, "abstraction*.json", "the benchmarks stage's abstraction.json"):
        file = path.stem
        loaded.files[file] = str(path)
        for i, rec in enumerate(expect(load_json(path), list, path, "a JSON list of items")):
            texts, other = (rec.get("texts"), rec.get("distractor_texts")) if isinstance(rec, dict) else (None, None)
            if not isinstance(texts, dict) or not isinstance(other, dict) or set(texts) != set(other):
                loaded.skip(file, i, "missing_key", "needs texts and distractor_texts with the same levels")
                continue
            image = check_image(loaded, file, i, images, rec.get("image_path"), absolute_ok=True)
            distractor = check_image(loaded, file, i, images, rec.get("distractor_path"), absolute_ok=True) \
                if image else None
            if distractor is None:
                continue
            for level, text in texts.items():
                if text == other[level]:
                    same += 1
                    continue
                loaded.items.append(LevelPair(file, f"{i}/{level}", image, distractor, text, other[level], level))
    loaded.notes = {"same_text_at_level": same}
    return loaded
