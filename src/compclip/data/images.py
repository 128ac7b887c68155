"""Open images by manifest path: a plain file, or a member of a webdataset shard written `shard.tar#key.jpg`."""

from __future__ import annotations

import io
import re
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


TAR_ERRORS = (tarfile.TarError, EOFError, OSError)  # what reading a damaged or cut-short tar raises


class _Shard:
    """Random access into one tar: the member index is read once, the file stays open. A shard cut short
    keeps the members before the cut; reading past it is a corrupt image, not a crash."""

    def __init__(self, path: str):
        self.path, self.members, self.lock = path, {}, threading.Lock()
        try:
            self.tar = tarfile.open(path, "r:")
            for m in self.tar:
                if m.isfile():
                    self.members[m.name] = m
        except TAR_ERRORS:
            pass  # truncated: the members read so far stay usable

    def read(self, name: str) -> bytes:
        member = self.members.get(name)
        if member is None:
            raise ImageProblem("missing_image", f"{name} not in shard {self.path}")
        with self.lock:
            try:
                data = self.tar.extractfile(member).read()
            except TAR_ERRORS as e:
                raise ImageProblem("corrupt_image", f"{self.path}#{name}: {type(e).__name__}: {e}") from None
        if len(data) != member.size:
            raise ImageProblem("corrupt_image", f"{self.path}#{name}: shard cut short inside this member")
        return data


@lru_cache(maxsize=64)
def _shard(path: str) -> _Shard:
    return _Shard(path)


def read_bytes(image_path: str) -> bytes:
    if TAR_SEP in image_path:
        at = image_path.index(TAR_SEP) + len(".tar")  # a '#' in a folder name is not the separator
        shard, member = image_path[:at], image_path[at + 1:]
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
        raise ImageProblem("corrupt_image", f"{image_path}: {type(e).__name__}: {stable_message(e)}") from None


def stable_message(e: Exception) -> str:
    """The error's text without object addresses ("<_io.BytesIO object at 0x7f…>"), so two identical runs
    write identical quarantine files."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(e))


def open_image(image_path: str) -> Image.Image:
    return decode(read_bytes(image_path), image_path)
