"""Zero-shot classification on an ImageFolder-style directory (`<root>/<class folder>/<image>`), so a user
sees whether fine-tuning cost general ability. Class names: `classnames.txt` in the root (one per line, in
the sorted order of the folders) or the folder names with `_` read as spaces. Prompts: `templates.txt` in
the root (one per line, `{}` for the class name) or CLIP's "a photo of a {}.". A class's text embedding is
the normalized mean over its prompts, as in CLIP's zero-shot protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compclip.data.records import SourceError
from compclip.evaluation.items import ImageRef, Loaded

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass(frozen=True)
class Labelled:
    file: str
    key: str
    image: ImageRef
    label: int


def read_zeroshot(data: Path, images: Path | None = None) -> Loaded:
    """`data` is the ImageFolder root (`images` is not needed: the images are in it)."""
    root = Path(data)
    if not root.is_dir():
        raise SourceError(f"{root}: not a folder of class folders (ImageFolder layout)")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if len(folders) < 2:
        raise SourceError(f"{root}: needs at least two class folders, found {len(folders)}")
    names_file, templates_file = root / "classnames.txt", root / "templates.txt"
    names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()] if names_file.exists() \
        else [p.name.replace("_", " ") for p in folders]
    if len(names) != len(folders):
        raise SourceError(f"{names_file}: {len(names)} names for {len(folders)} class folders")
    templates = [t.strip() for t in templates_file.read_text().splitlines() if t.strip()] \
        if templates_file.exists() else list(DEFAULT_TEMPLATES)
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise SourceError(f"{templates_file}: templates need '{{}}' for the class name: {bad[:3]}")
    loaded = Loaded("zeroshot", files={root.name: str(root)})
    for label, folder in enumerate(folders):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                loaded.skip(root.name, str(path.relative_to(root)), "not_an_image", f"suffix {path.suffix!r}")
                continue
            loaded.items.append(Labelled(root.name, str(path.relative_to(root)), ImageRef(str(path)), label))
    loaded.notes = {"classes": len(folders), "templates": len(templates)}
    loaded.classnames, loaded.templates = names, templates
    return loaded
