"""ARO's VG-Relation and VG-Attribution (Yuksekgonul et al.; REFERENCE §3).

Each file is a JSON list of {image_path, bbox_x, bbox_y, bbox_w, bbox_h, true_caption, false_caption,
relation_name | attributes}; the image is cropped to the box. Macro accuracy as ARO reports it: the mean
over relations, leaving out the relations in `aro_excluded_relations.json` (ARO's "symmetric" list), and
the mean over attribute pairs seen at least 25 times.
"""

from __future__ import annotations

import json
from pathlib import Path

from compclip.data.records import expect, load_json
from compclip.evaluation.items import Choice, Loaded
from compclip.evaluation.readers.common import box_of, check_image, data_files, file_keys

EXCLUDED_RELATIONS = frozenset(json.loads((Path(__file__).parent / "aro_excluded_relations.json").read_text())
                               ["relations"])
MIN_ATTRIBUTE_PAIR_COUNT = 25
BOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


def _read(kind: str, data: Path, images: Path, group_of) -> Loaded:
    loaded = Loaded(kind)
    paths = data_files(data, "*.json", f"ARO {kind}: visual_genome_*.json")
    for key, path in file_keys(paths, data).items():
        loaded.files[key] = str(path)
        for i, rec in enumerate(expect(load_json(path), list, path, "a JSON list of items")):
            if not isinstance(rec, dict):
                loaded.skip(key, i, "not_an_object", type(rec).__name__)
                continue
            texts = (rec.get("true_caption"), rec.get("false_caption"))
            group = group_of(rec)
            box = box_of(rec, BOX)
            missing = [k for k, v in (("true_caption", texts[0]), ("false_caption", texts[1]))
                       if not isinstance(v, str)] + (["relation_name/attributes"] if group is None else []) + \
                      ([k for k in BOX if k not in rec] if box is None else [])
            if missing:
                loaded.skip(key, i, "missing_key", f"needs {', '.join(missing)}")
                continue
            image = check_image(loaded, key, i, images, rec.get("image_path"), box)
            if image is not None:
                loaded.items.append(Choice(key, str(i), image, texts, group))
    return loaded


def _relation(rec: dict) -> str | None:
    r = rec.get("relation_name")
    return r if isinstance(r, str) else None


def _attribute_pair(rec: dict) -> str | None:
    a = rec.get("attributes")
    if isinstance(a, list) and len(a) == 2 and all(isinstance(x, str) for x in a):
        return f"{a[0]}_{a[1]}"
    return None


def read_vg_relation(data: Path, images: Path) -> Loaded:
    return _read("aro-relation", data, images, _relation)


def read_vg_attribution(data: Path, images: Path) -> Loaded:
    return _read("aro-attribution", data, images, _attribute_pair)


def macro_groups(benchmark: str, counts: dict[str, int]) -> set[str]:
    """The groups ARO's macro accuracy averages over."""
    if benchmark == "aro-relation":
        return {g for g in counts if g not in EXCLUDED_RELATIONS}
    return {g for g, n in counts.items() if n >= MIN_ATTRIBUTE_PAIR_COUNT}
