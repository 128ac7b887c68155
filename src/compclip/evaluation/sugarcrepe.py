"""SugarCrepe files: {type}.json, a dict keyed by string index of {filename, caption, negative_caption}."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

from compclip.data.records import HELD_OUT_FILE, SourceError, expect, join_under, load_json

if TYPE_CHECKING:
    from compclip.evaluation.items import Loaded

FILES = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att")
GROUPS = {"replace": ("replace_obj", "replace_att", "replace_rel"), "swap": ("swap_obj", "swap_att"),
          "add": ("add_obj", "add_att")}


@dataclass(frozen=True)
class Item:
    key: str
    image_path: str
    caption: str
    negative: str


def read_sugarcrepe(data_dir: Path, images_dir: Path, files=FILES) -> dict[str, list[Item]]:
    """The benchmark files present in data_dir (at least one must be); an item that is not well formed stops
    with its file and key."""
    data_dir, images_dir = Path(data_dir), Path(images_dir)
    out: dict[str, list[Item]] = {}
    for name in files:
        path = data_dir / f"{name}.json"
        if not path.exists():
            continue
        items = []
        for key, rec in expect(load_json(path), dict, path, "an object keyed by item index").items():
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str)
                                                    for k in ("filename", "caption", "negative_caption")):
                raise SourceError(f"{path}: item {key!r} needs string filename, caption and negative_caption")
            image = join_under(images_dir, rec["filename"])
            if image is None:
                raise SourceError(f"{path}: item {key!r}: filename {rec['filename']!r} leaves {images_dir}")
            items.append(Item(key, image, rec["caption"], rec["negative_caption"]))
        out[name] = items
    if not out:
        raise SourceError(f"{data_dir}: none of the SugarCrepe files {[f + '.json' for f in files]} is there")
    return out


def read_held_out(data_dir: Path, images_dir: Path) -> set[str] | None:
    """Image paths of held-out combinations, when the benchmark was made by compclip's synth stage."""
    path = Path(data_dir) / HELD_OUT_FILE
    if not path.exists():
        return None
    return {join_under(Path(images_dir), name) for name in expect(load_json(path), list, path, "a list of file names")}


def read_sugarcrepe_items(data: Path, images: Path) -> Loaded:
    """The suite's reader: every file present, items as Choice (caption first), held-out images marked;
    a malformed record is skipped with its file, key and reason instead of stopping the run."""
    from compclip.evaluation.items import Choice, Loaded
    from compclip.evaluation.readers.common import check_image

    data = Path(data)
    held_out = read_held_out(data, images) or set()
    loaded = Loaded("sugarcrepe")
    present = [n for n in FILES if (data / f"{n}.json").exists()] if data.is_dir() else [data.stem]
    if not present:
        raise SourceError(f"{data}: none of the SugarCrepe files {[f + '.json' for f in FILES]} is there")
    for name in present:
        path = data / f"{name}.json" if data.is_dir() else data
        loaded.files[name] = str(path)
        for key, rec in expect(load_json(path), dict, path, "an object keyed by item index").items():
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str)
                                                    for k in ("filename", "caption", "negative_caption")):
                loaded.skip(name, key, "missing_key", "needs string filename, caption and negative_caption")
                continue
            image = check_image(loaded, name, key, images, rec["filename"])
            if image is not None:
                subset = ("held_out" if image.path in held_out else "seen") if held_out else ""
                loaded.items.append(Choice(name, str(key), image, (rec["caption"], rec["negative_caption"]),
                                           subset=subset))
    return loaded
