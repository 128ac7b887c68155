"""What the readers share: where a benchmark's files are, and checking each item's image before scoring."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image

from compclip.data.records import HELD_OUT_FILE, SourceError, join_under
from compclip.evaluation.items import ImageRef, Loaded


def data_files(data: Path, pattern: str, what: str) -> list[Path]:
    """`data` is one file of the release or the folder it unpacks to (searched recursively, sorted)."""
    data = Path(data)
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise SourceError(f"{data}: not found ({what})")
    found = sorted(p for p in data.rglob(pattern) if p.is_file() and p.name != HELD_OUT_FILE)
    if not found:
        raise SourceError(f"{data}: no {pattern} files ({what})")
    return found


def file_keys(paths: list[Path], root: Path) -> dict[str, Path]:
    """Each file's key is its name without extension; where two files share a name (VL-CheckList's two
    `action.json`), their folders relative to the release's root are kept in front until keys are unique."""
    root = Path(root) if Path(root).is_dir() else Path(root).parent
    parts = {p: p.relative_to(root).with_suffix("").parts if p.is_relative_to(root) else (p.stem,) for p in paths}
    depth = {p: 1 for p in paths}
    while True:
        keys = {p: "/".join(parts[p][-depth[p]:]) for p in paths}
        clashes = {k for k in keys.values() if list(keys.values()).count(k) > 1}
        if not clashes:
            return {keys[p]: p for p in paths}
        grown = False
        for p in paths:
            if keys[p] in clashes and depth[p] < len(parts[p]):
                depth[p] += 1
                grown = True
        if not grown:
            raise SourceError(f"{root}: files {sorted(clashes)} cannot be told apart")


@lru_cache(maxsize=100_000)
def _size(path: str) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:  # reads the header only
            return im.size
    except Exception:  # unreadable: the scoring engine reports it as corrupt_image with its reason
        return None


def _image_path(loaded: Loaded, images: Path, relative: str, absolute_ok: bool) -> tuple[str | None, str, str]:
    """(path, "", "") of an item's image file, or (None, reason, detail). Once per distinct path of a
    benchmark: its items name the same images many times, and resolving each path was most of reading one."""
    key = (str(images), relative, absolute_ok)
    if key not in loaded.image_paths:
        path = relative if absolute_ok and Path(relative).is_absolute() else join_under(Path(images), relative)
        if path is None:
            loaded.image_paths[key] = (None, "bad_image_path", f"{relative!r} leaves {images}")
        elif not Path(path).is_file():
            loaded.image_paths[key] = (None, "missing_image", f"{path} not found")
        else:
            loaded.image_paths[key] = (path, "", "")
    return loaded.image_paths[key]


def check_image(loaded: Loaded, file: str, record, images: Path, relative: str,
                box: tuple[float, float, float, float] | None = None, absolute_ok: bool = False) -> ImageRef | None:
    """The item's image, or None after recording why it cannot be used (path leaving the images folder,
    missing file, empty box, box wholly outside the image). A box partly outside is kept: PIL's crop pads,
    as the benchmarks' own code does. absolute_ok: files compclip wrote itself may name absolute paths."""
    if not isinstance(relative, str) or not relative:
        loaded.skip(file, record, "missing_key", "no image path")
        return None
    path, reason, detail = _image_path(loaded, images, relative, absolute_ok)
    if path is None:
        loaded.skip(file, record, reason, detail)
        return None
    if box is not None:
        x, y, w, h = box
        if not (w > 0 and h > 0):
            loaded.skip(file, record, "empty_box", f"box {box} has no area")
            return None
        size = _size(path)
        if size is not None and (x >= size[0] or y >= size[1] or x + w <= 0 or y + h <= 0):
            loaded.skip(file, record, "box_outside_image", f"box {box} outside the {size[0]}x{size[1]} image")
            return None
    return ImageRef(path, box)


def number(rec: dict, key: str) -> float | None:
    v = rec.get(key)
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def box_of(rec: dict, keys: tuple[str, str, str, str]) -> tuple[float, float, float, float] | None:
    values = [number(rec, k) for k in keys]
    return None if any(v is None for v in values) else tuple(values)
