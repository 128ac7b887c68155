"""CC3M as img2dataset writes it: webdataset shards of <key>.jpg / <key>.txt / <key>.json.

img2dataset numbers keys from 000000000 in every output folder, so a key names a sample only within its
shard: the record key is `<shard path without .tar>/<key>`, unique across folders."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from compclip.data.images import TAR_ERRORS
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


END_OF_ARCHIVE = 1024  # two zero blocks close every complete tar


def read_cc3m(path: Path) -> Iterator[Candidate | Rejected]:
    """Every sample of every shard. A shard cut short (a copy or download that stopped) keeps the samples
    before the cut; the cut itself is one quarantine entry (truncated_shard) naming the shard, and the
    other shards are read as usual."""
    for shard in shards(path):
        try:
            tar = tarfile.open(shard, "r:")
        except tarfile.TarError as e:
            raise SourceError(f"{shard}: not a tar archive ({e})") from None
        with tar:
            samples: dict[str, dict[str, tarfile.TarInfo]] = {}
            members, cut = _members(tar, shard)
            for m in members:
                if m.isfile():
                    # webdataset convention: the key is the path up to the first dot of the file name
                    folder, _, name = m.name.rpartition("/")
                    stem, _, ext = name.partition(".")
                    samples.setdefault(f"{folder}/{stem}" if folder else stem, {})[ext.lower()] = m
            prefix = str(shard)[:-len(".tar")]
            for key, parts in samples.items():
                yield _sample(tar, shard, f"{prefix}/{key}", key, parts)
            if cut:
                yield Rejected("cc3m", str(shard), "<end of shard>", "truncated_shard", cut)


def _members(tar: tarfile.TarFile, shard: Path) -> tuple[list[tarfile.TarInfo], str | None]:
    """The members that could be read, and why the shard looks cut short (None if it is whole)."""
    members = []
    try:
        for m in tar:
            members.append(m)
    except TAR_ERRORS as e:
        return members, f"unreadable after {len(members)} members ({type(e).__name__}: {e}); samples after it are lost"
    end = max((m.offset_data + -(-m.size // 512) * 512 for m in members), default=0)
    size = shard.stat().st_size
    if size < end:
        return members, f"cut inside its last member ({size} of {end} bytes); samples after it are lost"
    if size - end < END_OF_ARCHIVE:
        return members, (f"no end-of-archive marker after {len(members)} members: the file was cut between "
                         "members; samples after the cut are lost")
    return members, None


def _sample(tar: tarfile.TarFile, shard: Path, key: str, member_key: str,
            parts: dict[str, tarfile.TarInfo]) -> Candidate | Rejected:
    file = str(shard)
    image_ext = next((e for e in IMAGE_EXTS if e in parts), None)
    if image_ext is None:
        return Rejected("cc3m", file, key, "missing_image", f"no image member for key {member_key}")
    caption: object = None
    try:
        if "txt" in parts:
            raw = tar.extractfile(parts["txt"]).read()
            if len(raw) != parts["txt"].size:
                raise EOFError("member cut short")
            caption = raw.decode("utf-8")
        elif "json" in parts:
            caption = json.loads(tar.extractfile(parts["json"]).read()).get("caption")
    except UnicodeDecodeError as e:
        return Rejected("cc3m", file, key, "malformed_record",
                        f"{member_key}: caption is not valid UTF-8 (byte 0x{e.object[e.start]:02x} at position {e.start})")
    except (json.JSONDecodeError, AttributeError):
        return Rejected("cc3m", file, key, "malformed_record", f"{member_key}.json is not a JSON object")
    except TAR_ERRORS as e:
        return Rejected("cc3m", file, key, "truncated_shard", f"{member_key}: {type(e).__name__}: {e}")
    if caption is None:
        return Rejected("cc3m", file, key, "malformed_record", "no .txt member and no caption in .json")
    image_path = f"{shard}#{parts[image_ext].name}"
    return Candidate("cc3m", file, key, key, image_path, caption)
