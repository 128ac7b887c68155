"""CC3M as img2dataset writes it: webdataset shards of <key>.jpg / <key>.txt / <key>.json."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from compclip.data.quarantine import Rejected
from compclip.data.records import Candidate, SourceError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def shards(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.tar"))
        if not found:
            raise SourceError(f"{path}: no .tar shards in this folder")
        return found
    if not path.is_file():
        raise SourceError(f"{path}: not found")
    if not path.name.endswith(".tar"):
        raise SourceError(f"{path}: expected a folder of .tar shards or one .tar shard")
    return [path]


def read_cc3m(path: Path) -> Iterator[Candidate | Rejected]:
    for shard in shards(path):
        try:
            tar = tarfile.open(shard, "r:")
        except tarfile.TarError as e:
            raise SourceError(f"{shard}: not a tar archive ({e})") from None
        with tar:
            samples: dict[str, dict[str, tarfile.TarInfo]] = {}
            for m in tar.getmembers():
                if m.isfile():
                    # webdataset convention: the key is the path up to the first dot of the file name
                    folder, _, name = m.name.rpartition("/")
                    stem, _, ext = name.partition(".")
                    samples.setdefault(f"{folder}/{stem}" if folder else stem, {})[ext.lower()] = m
            for key, parts in samples.items():
                yield _sample(tar, shard, key, parts)


def _sample(tar: tarfile.TarFile, shard: Path, key: str, parts: dict[str, tarfile.TarInfo]) -> Candidate | Rejected:
    file = str(shard)
    image_ext = next((e for e in IMAGE_EXTS if e in parts), None)
    if image_ext is None:
        return Rejected("cc3m", file, key, "missing_image", f"no image member for key {key}")
    caption: object = None
    if "txt" in parts:
        caption = tar.extractfile(parts["txt"]).read().decode("utf-8", errors="replace")
    elif "json" in parts:
        try:
            caption = json.loads(tar.extractfile(parts["json"]).read()).get("caption")
        except (json.JSONDecodeError, AttributeError):
            return Rejected("cc3m", file, key, "malformed_record", f"{key}.json is not a JSON object")
    if caption is None:
        return Rejected("cc3m", file, key, "malformed_record", "no .txt member and no caption in .json")
    image_path = f"{shard}#{parts[image_ext].name}"
    return Candidate("cc3m", file, key, key, image_path, caption)
