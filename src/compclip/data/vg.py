"""Visual Genome: region descriptions as captions of their region, images located through image_data.json.

Images live where the VG zips unpack them, `<vg_dir>/VG_100K[_2]/<id>.jpg`; the folder is the last
path part of each image's url. Both releases are read: 1.2+ names the fields `image_id` / `region_id`,
1.0 names them `id` (images and regions) and `image` (a region's image).
Real region boxes often stick out of the image by a few pixels; they are clipped to it and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from compclip.data.quarantine import Rejected
from compclip.data.records import Candidate, expect, join_under, load_json
from compclip.errors import UserError

BOX_CLIPPED = "box_clipped"


def _first(record: dict, *names: str):
    """The first of these fields that the record has (the releases name the same field differently)."""
    return next((record[n] for n in names if n in record), None)


def _image_paths(vg_dir: Path) -> dict[object, tuple[str | None, str, tuple | None]]:
    """image id -> (path or None when it leaves vg_dir, url path, (width, height) or None)."""
    path = vg_dir / "image_data.json"
    out: dict[object, tuple[str | None, str, tuple | None]] = {}
    for rec in expect(load_json(path), list, path, "a list of images"):
        image_id = _first(rec, "image_id", "id") if isinstance(rec, dict) else None
        if image_id is None or not isinstance(rec.get("url"), str):
            continue  # regions pointing at it are quarantined as malformed
        rel = "/".join(urlparse(rec["url"]).path.split("/")[-2:])
        size = (rec["width"], rec["height"]) if _is_number(rec.get("width")) and _is_number(rec.get("height")) else None
        out[image_id] = (join_under(vg_dir, rel), rel, size)
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def clip_box(box: tuple, size: tuple | None, key: str) -> tuple[tuple[float, float, float, float], bool]:
    """The box cut to the image ((x, y, w, h), whether it changed); an error when no area is left."""
    if not all(_is_number(v) for v in box):
        raise UserError(f"region {key}: x, y, width, height must be numbers, got {box}")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise UserError(f"region {key}: box {box} has an empty size")
    x0, y0, x1, y1 = max(x, 0), max(y, 0), x + w, y + h
    if size is not None:
        x1, y1 = min(x1, size[0]), min(y1, size[1])
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"region {key}: box {box} has no area inside the {size[0]}x{size[1]} image"
                        if size else f"region {key}: box {box} lies left of or above the image")
    clipped = (x0, y0, x1 - x0, y1 - y0)
    return clipped, clipped != tuple(box)


def read_vg(vg_dir: Path) -> Iterator[Candidate | Rejected]:
    vg_dir = Path(vg_dir)
    images = _image_paths(vg_dir)
    regions_file = vg_dir / "region_descriptions.json"
    file = str(regions_file)
    for i, entry in enumerate(expect(load_json(regions_file), list, regions_file, "a list of images")):
        if not isinstance(entry, dict) or not isinstance(entry.get("regions"), list):
            yield Rejected("vg", file, f"[{i}]", "malformed_record", "needs a regions list")
            continue
        for j, region in enumerate(entry["regions"]):
            where = f"[{i}].regions[{j}]"
            if not isinstance(region, dict):
                yield Rejected("vg", file, where, "malformed_record", "a region must be an object")
                continue
            region_id, image_id = _first(region, "region_id", "id"), _first(region, "image_id", "image")
            key = str(region_id) if region_id is not None else where
            if region_id is None or image_id is None or "phrase" not in region:
                yield Rejected("vg", file, key, "malformed_record",
                               "needs region_id (1.0: id), image_id (1.0: image) and phrase")
                continue
            if image_id not in images:
                yield Rejected("vg", file, key, "malformed_record",
                               f"image_id {image_id!r} has no valid entry in image_data.json")
                continue
            path, rel, size = images[image_id]
            if path is None:
                yield Rejected("vg", file, key, "path_outside_root", f"image url path {rel!r} leaves {vg_dir}")
                continue
            try:
                bbox, clipped = clip_box(tuple(region.get(k) for k in ("x", "y", "width", "height")), size, key)
            except UserError as e:
                yield Rejected("vg", file, key, "malformed_record", str(e))
                continue
            yield Candidate("vg", file, key, str(image_id), path, region["phrase"], None, bbox,
                            BOX_CLIPPED if clipped else "")
