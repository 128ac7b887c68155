"""Open images by manifest path: a plain file, or a member of a webdataset shard written `shard.tar#key.jpg`."""

from __future__ import annotations

import io
import tarfile
import threading
from functools import lru_cache
from pathlib import Path

from PIL import Image

TAR_SEP = ".tar#"


class ImageProblem(Exception):
    """Why an image cannot be used; `reason` is a quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class _Shard:
    """Random access into one tar: the member index is read once, the file stays open."""

    def __init__(self, path: str):
        self.tar = tarfile.open(path, "r:")
        self.members = {m.name: m for m in self.tar.getmembers() if m.isfile()}
        self.lock = threading.Lock()

    def read(self, name: str) -> bytes:
        member = self.members.get(name)
        if member is None:
            raise ImageProblem("missing_image", f"{name} not in shard")
        with self.lock:
            return self.tar.extractfile(member).read()


@lru_cache(maxsize=64)
def _shard(path: str) -> _Shard:
    return _Shard(path)


def read_bytes(image_path: str) -> bytes:
    if TAR_SEP in image_path:
        shard, member = image_path.split("#", 1)
        if not Path(shard).is_file():
            raise ImageProblem("missing_image", f"shard {shard} not found")
        return _shard(shard).read(member)
    try:
        return Path(image_path).read_bytes()
    except FileNotFoundError:
        raise ImageProblem("missing_image", f"{image_path} not found") from None
    except IsADirectoryError:
        raise ImageProblem("missing_image", f"{image_path} is a directory") from None


def decode(data: bytes, image_path: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # full decode: a truncated JPEG only fails here
        return img.convert("RGB")
    except Exception as e:  # PIL raises several types for bad data
        raise ImageProblem("corrupt_image", f"{image_path}: {type(e).__name__}: {e}") from None


def open_image(image_path: str) -> Image.Image:
    return decode(read_bytes(image_path), image_path)
