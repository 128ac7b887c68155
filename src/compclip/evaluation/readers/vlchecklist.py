"""VL-CheckList (Zhao et al.; REFERENCE §4): the `data/` tree of the release, e.g.
`Attribute/vg/color.json`, `Object/Location/vg_location/vg_subj_center.json`, `Relation/vg/spatial.json`,
each a JSON list of [image path, {"POS": [texts], "NEG": [texts]}] (image paths relative to the images root).

Its ITC protocol: correct iff score(POS[0]) > score(NEG[0]). Accuracy per file, and the Object, Attribute
and Relation means over the files under each (the category is the first folder under `data/`).
"""

from __future__ import annotations

from pathlib import Path

from compclip.data.records import expect, load_json
from compclip.evaluation.items import Choice, Loaded
from compclip.evaluation.readers.common import check_image, data_files, file_keys

CATEGORIES = ("Object", "Attribute", "Relation")


def category(path: Path) -> str:
    for part in reversed(Path(path).parts):
        if part in CATEGORIES:
            return part
    return "Other"


def read_vl_checklist(data: Path, images: Path) -> Loaded:
    loaded = Loaded("vl-checklist")
    paths = data_files(data, "*.json", "VL-CheckList's data/ tree")
    for key, path in file_keys(paths, data).items():
        loaded.files[key] = str(path)
        group = category(path.relative_to(data) if Path(data).is_dir() else path)
        extra = 0
        for i, rec in enumerate(expect(load_json(path), list, path, "a JSON list of [image, {POS, NEG}]")):
            texts = rec[1] if isinstance(rec, list) and len(rec) == 2 and isinstance(rec[1], dict) else None
            pos = texts.get("POS") if texts else None
            neg = texts.get("NEG") if texts else None
            if not (isinstance(pos, list) and pos and isinstance(pos[0], str)
                    and isinstance(neg, list) and neg and isinstance(neg[0], str)):
                loaded.skip(key, i, "missing_key", "needs [image path, {\"POS\": [text], \"NEG\": [text]}]")
                continue
            extra += len(pos) - 1 + len(neg) - 1
            image = check_image(loaded, key, i, images, rec[0])
            if image is not None:
                loaded.items.append(Choice(key, str(i), image, (pos[0], neg[0]), group))
        if extra:
            loaded.notes[f"{key}/texts_beyond_first"] = extra
    return loaded
