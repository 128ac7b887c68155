"""VALSE (Parcalabescu et al.; REFERENCE §4): one JSON file per piece, a dict keyed by foil id of
{dataset, image_file, caption, foil, mturk: {caption, foil, other}, ...}.

As VALSE's own evaluation: only items that at least two of three annotators judged the caption to fit
(`mturk.caption >= 2`) are scored; the rest are counted as `excluded_by_annotators`, not skipped. Pairwise
ranking accuracy (caption scored above foil) per piece, the category means, and `avg` over the pieces.
The images come from several datasets: each is looked up as `<images>/<image_file>`, then
`<images>/<dataset>/<image_file>`.
"""

from __future__ import annotations

from pathlib import Path

from compclip.data.records import expect, join_under, load_json
from compclip.evaluation.items import Choice, Loaded
from compclip.evaluation.readers.common import check_image, data_files, file_keys

MIN_CAPTION_VOTES = 2
CATEGORIES = {"Existence": ["existence"], "Plurality": ["plurals"],
              "Counting": ["counting-hard", "counting-small-quant", "counting-adversarial"],
              "Relations": ["relations"], "Actions": ["action-replacement", "actant-swap"],
              "Coreference": ["coreference-standard", "coreference-hard"], "Foil-it": ["foil-it"]}


def _image_path(images: Path, rec: dict) -> str | None:
    name, dataset = rec.get("image_file"), rec.get("dataset")
    if isinstance(name, str) and isinstance(dataset, str) and join_under(images, name) is not None \
            and not (images / name).is_file() and (images / dataset / name).is_file():
        return f"{dataset}/{name}"
    return name


def read_valse(data: Path, images: Path) -> Loaded:
    loaded = Loaded("valse")
    excluded = 0
    paths = data_files(data, "*.json", "VALSE's data/<piece>.json")
    for key, path in file_keys(paths, data).items():
        loaded.files[key] = str(path)
        for foil_id, rec in expect(load_json(path), dict, path, "an object keyed by foil id").items():
            if not isinstance(rec, dict):
                loaded.skip(key, foil_id, "not_an_object", type(rec).__name__)
                continue
            votes = rec.get("mturk", {}).get("caption") if isinstance(rec.get("mturk"), dict) else None
            missing = [k for k in ("caption", "foil") if not isinstance(rec.get(k), str)]
            missing += [] if isinstance(votes, (int, float)) and not isinstance(votes, bool) else ["mturk.caption"]
            if missing:
                loaded.skip(key, foil_id, "missing_key", f"needs {', '.join(missing)}")
                continue
            if votes < MIN_CAPTION_VOTES:
                excluded += 1
                continue
            image = check_image(loaded, key, foil_id, Path(images), _image_path(Path(images), rec))
            if image is not None:
                loaded.items.append(Choice(key, str(foil_id), image, (rec["caption"], rec["foil"]), key))
    loaded.notes = {"excluded_by_annotators": excluded}
    return loaded
