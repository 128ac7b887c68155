"""CREPE (Ma et al.; REFERENCE §5): CSV files with image_id (a Visual Genome id), caption, x, y, width,
height, and the hard negatives as a Python list literal: `hard_negs` (productivity files) or
`valid_hard_negs_{atom,comp,combined}` (systematicity files). The image is cropped to the box
(`TF.crop(img, y, x, height, width)` in CREPE). The caption is ranked among its own negatives
(one image, 1 + K texts): R@1/3/5/10 and the mean rank. A systematicity file gives one result per
negatives column, keyed `<file>/<column suffix>`.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from compclip.data.records import SourceError
from compclip.evaluation.items import Choice, Loaded
from compclip.evaluation.readers.common import box_of, check_image, data_files, file_keys

NEGATIVE_COLUMNS = ("hard_negs", "valid_hard_negs_atom", "valid_hard_negs_comp", "valid_hard_negs_combined")
IMAGE_DIRS = ("VG_100K", "VG_100K_2", "")  # Visual Genome's two image folders, or all in one
BOX = ("x", "y", "width", "height")


def _image(images: Path, image_id: str) -> str:
    for d in IMAGE_DIRS:
        rel = f"{d}/{image_id}.jpg" if d else f"{image_id}.jpg"
        if (images / rel).is_file():
            return rel
    return f"{IMAGE_DIRS[0]}/{image_id}.jpg"  # missing: reported under the usual name


def _negatives(text: str) -> list[str] | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def read_crepe(data: Path, images: Path) -> Loaded:
    loaded = Loaded("crepe")
    images = Path(images)
    for key, path in file_keys(data_files(data, "*.csv", "CREPE's CSV files"), data).items():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = [c for c in NEGATIVE_COLUMNS if c in (reader.fieldnames or [])]
            if not columns or "caption" not in reader.fieldnames or "image_id" not in reader.fieldnames:
                raise SourceError(f"{path}: needs columns image_id, caption and one of {list(NEGATIVE_COLUMNS)}; "
                                  f"has {reader.fieldnames}")
            rows = list(reader)
        for column in columns:
            file = key if column == "hard_negs" else f"{key}/{column.removeprefix('valid_hard_negs_')}"
            loaded.files[file] = str(path)
            for i, row in enumerate(rows, start=2):  # the CSV line number (the header is line 1)
                negs = _negatives(row.get(column) or "")
                box = box_of(row, BOX)
                if negs is None or not row.get("caption") or not row.get("image_id") or box is None:
                    loaded.skip(file, f"line {i}", "missing_key",
                                f"needs image_id, caption, {', '.join(BOX)} and {column} as a list of strings")
                    continue
                negs = [n for n in negs if n != row["caption"]]
                if not negs:
                    loaded.skip(file, f"line {i}", "no_negatives", f"{column} is empty")
                    continue
                image = check_image(loaded, file, f"line {i}", images, _image(images, row["image_id"].strip()), box)
                if image is not None:
                    loaded.items.append(Choice(file, f"line {i}", image, (row["caption"], *negs)))
    return loaded
