"""COCO captions: annotations/captions_<split>.json with `images` and `annotations` lists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from compclip.data.quarantine import Rejected
from compclip.data.records import Candidate, SourceError, expect, join_under, load_json

SPLIT_FROM_NAME = re.compile(r"captions_([a-z]+?)(\d{4})?\.json$")


def split_of(captions_file: Path) -> str:
    m = SPLIT_FROM_NAME.search(captions_file.name)
    if not m:
        raise SourceError(f"{captions_file}: cannot tell the split from the file name "
                          "(expected captions_<split>[year].json); set `split` for this source in params.yaml")
    return m.group(1)


def read_coco(captions_file: Path, images_dir: Path, split: str | None = None) -> Iterator[Candidate | Rejected]:
    captions_file, images_dir = Path(captions_file), Path(images_dir)
    split = split or split_of(captions_file)
    data = expect(load_json(captions_file), dict, captions_file, "an object with images and annotations")
    for key in ("images", "annotations"):
        expect(data.get(key), list, captions_file, f"a list under '{key}'")
    file = str(captions_file)

    # image id -> (path, None) or (None, Rejected-style (reason, detail)) for annotations that point at it
    images: dict[object, tuple[str | None, tuple[str, str] | None]] = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            continue  # annotations pointing at it are quarantined below as malformed
        if img["id"] in images:
            images[img["id"]] = (None, ("duplicate", f"image id {img['id']!r} is listed twice in images"))
            continue
        path = join_under(images_dir, img["file_name"])
        problem = None if path else ("path_outside_root", f"file_name {img['file_name']!r} leaves {images_dir}")
        images[img["id"]] = (path, problem)

    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "id" not in ann or "image_id" not in ann or "caption" not in ann:
            yield Rejected("coco", file, f"annotations[{i}]", "malformed_record",
                           "needs id, image_id and caption")
            continue
        key = str(ann["id"])
        if ann["image_id"] not in images:
            yield Rejected("coco", file, key, "malformed_record",
                           f"image_id {ann['image_id']!r} has no valid entry in images (needs id and file_name)")
            continue
        path, problem = images[ann["image_id"]]
        if problem:
            yield Rejected("coco", file, key, *problem)
            continue
        yield Candidate("coco", file, key, str(ann["image_id"]), path, ann["caption"], split)
