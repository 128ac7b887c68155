"""Visual Genome: region descriptions as captions of their region, images located through image_data.json.

Images live where the VG zips unpack them, `<vg_dir>/VG_100K[_2]/<id>.jpg`; the folder is the last
path part of each image's url.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from compclip.data.quarantine import Rejected
from compclip.data.records import Candidate, expect, join_under, load_json
from compclip.errors import UserError


def _image_paths(vg_dir: Path) -> dict[object, tuple[str | None, str]]:
    path = vg_dir / "image_data.json"
    out: dict[object, tuple[str | None, str]] = {}
    for rec in expect(load_json(path), list, path, "a list of images"):
        if not isinstance(rec, dict) or "image_id" not in rec or not isinstance(rec.get("url"), str):
            continue
        rel = "/".join(urlparse(rec["url"]).path.split("/")[-2:])
        out[rec["image_id"]] = (join_under(vg_dir, rel), rel)
    return out


def _bbox(region: dict, key: str) -> tuple[float, float, float, float]:
    box = tuple(region[k] for k in ("x", "y", "width", "height"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        raise UserError(f"region {key}: x, y, width, height must be numbers")
    if box[0] < 0 or box[1] < 0 or box[2] <= 0 or box[3] <= 0:
        raise UserError(f"region {key}: box {box} has a negative origin or an empty size")
    return box


def read_vg(vg_dir: Path) -> Iterator[Candidate | Rejected]:
    vg_dir = Path(vg_dir)
    paths = _image_paths(vg_dir)
    regions_file = vg_dir / "region_descriptions.json"
    file = str(regions_file)
    for i, entry in enumerate(expect(load_json(regions_file), list, regions_file, "a list of images")):
        if not isinstance(entry, dict) or not isinstance(entry.get("regions"), list):
            yield Rejected("vg", file, f"[{i}]", "malformed_record", "needs a regions list")
            continue
        for j, region in enumerate(entry["regions"]):
            key = str(region.get("region_id", f"[{i}].regions[{j}]")) if isinstance(region, dict) else f"[{i}].regions[{j}]"
            if not isinstance(region, dict) or "phrase" not in region or "image_id" not in region:
                yield Rejected("vg", file, key, "malformed_record", "needs region_id, image_id and phrase")
                continue
            if region["image_id"] not in paths:
                yield Rejected("vg", file, key, "malformed_record",
                               f"image_id {region['image_id']!r} has no valid entry in image_data.json")
                continue
            path, rel = paths[region["image_id"]]
            if path is None:
                yield Rejected("vg", file, key, "path_outside_root", f"image url path {rel!r} leaves {vg_dir}")
                continue
            try:
                bbox = _bbox(region, key)
            except (KeyError, ValueError) as e:
                yield Rejected("vg", file, key, "malformed_record", str(e))
                continue
            yield Candidate("vg", file, key, str(region["image_id"]), path, region["phrase"], None, bbox)
