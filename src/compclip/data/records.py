"""What the source readers yield, and the helpers they share."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from compclip.errors import UserError


@dataclass(frozen=True)
class Candidate:
    """One (image, caption) record as a reader found it, before the common checks."""

    source: str
    file: str
    key: str
    image_key: str  # identifies the image within its source (e.g. COCO image id)
    image_path: str
    caption: object  # not yet checked to be a string
    split: str | None = None  # None: assigned by hash
    bbox: tuple[float, float, float, float] | None = None  # x, y, w, h
    adjusted: str = ""  # what the reader changed to keep the record (e.g. "box_clipped"); counted by ingest


# compclip's addition to a SugarCrepe-format folder: the test images that show held-out combinations
HELD_OUT_FILE = "held_out_images.json"


class SourceError(UserError):
    """A source file that cannot be read at all (not JSON, wrong top-level shape)."""


def load_json(path: Path, missing: str = "file not found"):
    """The parsed file, or a SourceError naming it (`missing` says what to do when it is not there)."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SourceError(f"{path}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None


def expect(obj, kind: type, path: Path, what: str):
    if not isinstance(obj, kind):
        raise SourceError(f"{path}: expected {what} ({kind.__name__}), got {type(obj).__name__}")
    return obj


def join_under(root: Path, relative: str) -> str | None:
    """root/relative as a string, or None when it would leave root: absolute paths, '..', and symlinks
    (of the file or of a folder on the way) that point outside root. The check is on resolved paths."""
    if os.path.isabs(relative):
        return None
    joined = os.path.normpath(os.path.join(root, relative))
    base = _real_folder(os.path.abspath(root))  # absolute: the cache must not outlive a chdir
    folder, name = os.path.split(os.path.abspath(joined))
    real = os.path.join(_real_folder(folder), name)
    if os.path.islink(real):
        real = os.path.realpath(real)
    if os.path.commonpath([real, base]) != base:
        return None
    return joined


@lru_cache(maxsize=65536)
def _real_folder(path: str) -> str:
    """os.path.realpath of a folder, once per process: an evaluation checks tens of thousands of image paths
    in a few hundred folders, and resolving each from the root was among its largest costs outside the
    model. Folders are not expected to turn into symlinks while a stage runs; the file itself is checked
    every time."""
    return os.path.realpath(path)
