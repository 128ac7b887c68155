"""The shapes world's test split written in each benchmark's released format, so the demo runs every
reader on data whose truth is known: ARO (VG-Relation, VG-Attribution), a Karpathy test file (retrieval and
COCO-Order), VALSE pieces, a VL-CheckList `data/` tree, CREPE CSVs and an ImageFolder for zero-shot.

Every negative is checked false against the scene graph (and every positive true) before it is written;
held-out combinations are included, and `held_out_images.json` beside each format (compclip's addition,
as in the SugarCrepe folder) lets the suite score them apart. Choices are seeded per image and format, so
the files do not depend on the order they are written in.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from compclip.data.records import HELD_OUT_FILE
from compclip.data.world import RELATIONS, Description, Mention, Scene, SceneObject
from compclip.hashing import stable_int

VALSE_VOTES = {"foil": 0, "caption": 3, "other": 0}  # every caption is true by construction
ZEROSHOT_TEMPLATES = ("a photo of a {}.", "a {} shape.", "a drawing of a {}.")


@dataclass(frozen=True)
class TestScene:
    image_id: int
    file_name: str  # under coco/test
    scene: Scene
    boxes: tuple[tuple[int, int, int, int], ...]
    captions: tuple[str, ...]
    held_out: bool


def test_scenes(synth_dir: Path) -> list[TestScene]:
    out = []
    with open(Path(synth_dir) / "scenes.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["split"] != "test" or r["source"] != "coco":
                continue
            objs = tuple(SceneObject(o["shape"], o["color"], o["size"], o["pattern"], o["row"], o["col"])
                         for o in r["objects"])
            out.append(TestScene(r["image_id"], Path(r["image_path"]).name, Scene(objs),
                                 tuple(tuple(o["bbox"]) for o in r["objects"]), tuple(r["captions"]), r["held_out"]))
    return out


def _phrase(o: SceneObject, *attrs: str) -> str:
    return " ".join([*(getattr(o, a) for a in attrs), o.shape])


def _mention(o: SceneObject, *attrs: str) -> Mention:
    return Mention(o.shape, tuple((a, getattr(o, a)) for a in ("size", "pattern", "color") if a in attrs))


def _union(*boxes) -> tuple[int, int, int, int]:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def _true(scene: Scene, *mentions: Mention, relations=()) -> bool:
    return Description(tuple(mentions), tuple(relations)).is_true_in(scene)


def _rng(seed: int, fmt: str, ts: TestScene) -> random.Random:
    return random.Random(stable_int(f"{seed}|release_formats|{fmt}|{ts.image_id}"))


def _relation_pairs(ts: TestScene, rng: random.Random, limit: int) -> Iterator[tuple[int, str, int]]:
    """True relations (i, rel, j) whose two mentions (colour + shape) swap to a false caption."""
    objs = ts.scene.objects
    triples = [(i, rel, j) for i, rel, j in ts.scene.true_relations()
               if (objs[i].color, objs[i].shape) != (objs[j].color, objs[j].shape)]
    rng.shuffle(triples)
    n = 0
    for i, rel, j in triples:
        a, b = _mention(objs[i], "color"), _mention(objs[j], "color")
        if _true(ts.scene, a, b, relations=[(0, rel, 1)]) and not _true(ts.scene, b, a, relations=[(0, rel, 1)]):
            yield i, rel, j
            n += 1
            if n == limit:
                return


def aro(scenes: list[TestScene], seed: int, per_image: int) -> tuple[list, list]:
    relation, attribution = [], []
    for ts in scenes:
        objs, path = ts.scene.objects, f"coco/test/{ts.file_name}"
        rng = _rng(seed, "aro", ts)
        for i, rel, j in _relation_pairs(ts, rng, per_image):
            x, y, w, h = _union(ts.boxes[i], ts.boxes[j])
            phrase = RELATIONS[rel][0]
            relation.append({"image_path": path, "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h,
                             "relation_name": phrase,
                             "true_caption": f"the {_phrase(objs[i], 'color')} is {phrase} the {_phrase(objs[j], 'color')}",
                             "false_caption": f"the {_phrase(objs[j], 'color')} is {phrase} the {_phrase(objs[i], 'color')}"})
        pairs = [(i, j) for i in range(len(objs)) for j in range(len(objs))
                 if i != j and objs[i].color != objs[j].color and objs[i].shape != objs[j].shape]
        rng.shuffle(pairs)
        for i, j in pairs[:per_image]:
            a, b = objs[i], objs[j]
            swapped = (Mention(a.shape, (("color", b.color),)), Mention(b.shape, (("color", a.color),)))
            if _true(ts.scene, *swapped):
                continue
            x, y, w, h = _union(ts.boxes[i], ts.boxes[j])
            attribution.append({"image_path": path, "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h,
                                "attributes": [a.color, b.color],
                                "true_caption": f"the {a.color} {a.shape} and the {b.color} {b.shape}",
                                "false_caption": f"the {b.color} {a.shape} and the {a.color} {b.shape}"})
    return relation, attribution


def karpathy(scenes: list[TestScene]) -> list[dict]:
    return [{"image": f"coco/test/{ts.file_name}", "caption": list(ts.captions)} for ts in scenes]


def valse(scenes: list[TestScene], seed: int) -> dict[str, dict]:
    pieces = {"relations": {}, "actant-swap": {}, "counting-small-quant": {}}

    def add(piece, ts, caption, foil, classes, classes_foil):
        key = f"{piece}:compclip_shapes:{ts.image_id}"
        pieces[piece][key] = {"dataset": "compclip_shapes", "original_split": "test", "dataset_idx": ts.image_id,
                              "image_file": ts.file_name, "linguistic_phenomena": piece, "caption": caption,
                              "foil": foil, "classes": classes, "classes_foil": classes_foil, "key": key,
                              "mturk": dict(VALSE_VOTES)}

    for ts in scenes:
        objs, rng = ts.scene.objects, _rng(seed, "valse", ts)
        for i, rel, j in _relation_pairs(ts, rng, 1):
            a, b = _mention(objs[i], "color"), _mention(objs[j], "color")
            caption = f"{a.text()} is {RELATIONS[rel][0]} {b.text()}".capitalize() + "."
            add("actant-swap", ts, caption, f"{b.text()} is {RELATIONS[rel][0]} {a.text()}".capitalize() + ".",
                a.text(), b.text())
            others = [r for r in RELATIONS if r != rel and not _true(ts.scene, a, b, relations=[(0, r, 1)])]
            if others:
                r = rng.choice(sorted(others))
                add("relations", ts, caption, f"{a.text()} is {RELATIONS[r][0]} {b.text()}".capitalize() + ".",
                    RELATIONS[rel][0], RELATIONS[r][0])
        n = len(objs)
        wrong = rng.choice([k for k in range(1, 5) if k != n])
        word = lambda k: f"{k} shape" + ("s" if k != 1 else "")  # noqa: E731
        add("counting-small-quant", ts, f"There {'is' if n == 1 else 'are'} {word(n)}.",
            f"There {'is' if wrong == 1 else 'are'} {word(wrong)}.", str(n), str(wrong))
    return pieces


def vl_checklist(scenes: list[TestScene], seed: int, vocab: dict[str, list[str]]) -> dict[str, list]:
    files = {"Attribute/shapes/color": [], "Attribute/shapes/size": [], "Attribute/shapes/pattern": [],
             "Object/shapes/shape": [], "Relation/shapes/spatial": []}
    for ts in scenes:
        objs, rng, path = ts.scene.objects, _rng(seed, "vl-checklist", ts), f"coco/test/{ts.file_name}"
        o = objs[rng.randrange(len(objs))]
        for attr, file in (("color", "color"), ("size", "size"), ("pattern", "pattern")):
            wrong = [v for v in vocab[attr] if v != getattr(o, attr)
                     and not _true(ts.scene, _mention(o, attr).with_attr(attr, v))]
            if wrong:
                neg = _mention(o, attr).with_attr(attr, rng.choice(wrong))
                files[f"Attribute/shapes/{file}"].append(
                    [path, {"POS": [_phrase(o, attr)], "NEG": [" ".join([neg.get(attr), o.shape])]}])
        wrong = [s for s in vocab["shape"] if not _true(ts.scene, Mention(s, (("color", o.color),)))]
        if wrong:
            files["Object/shapes/shape"].append([path, {"POS": [_phrase(o, "color")],
                                                        "NEG": [f"{o.color} {rng.choice(wrong)}"]}])
        for i, rel, j in _relation_pairs(ts, rng, 1):
            a, b = _phrase(objs[i], "color"), _phrase(objs[j], "color")
            converse = RELATIONS[rel][1]
            files["Relation/shapes/spatial"].append([path, {"POS": [f"{a} {RELATIONS[rel][0]} {b}"],
                                                            "NEG": [f"{a} {RELATIONS[converse][0]} {b}"]}])
    return files


def crepe(scenes: list[TestScene], seed: int, image_size: int, negatives: int) -> dict[str, list[dict]]:
    """swap: colours exchanged between two mentions (every permutation that is false); atom: one colour
    replaced. Up to `negatives` per caption, as CREPE's productivity files (5)."""
    files = {"shapes_hard_negs_swap": [], "shapes_hard_negs_atom": []}
    colors = sorted({o.color for ts in scenes for o in ts.scene.objects})
    for ts in scenes:
        objs, rng = ts.scene.objects, _rng(seed, "crepe", ts)
        if len(objs) < 2:
            continue
        ms = [_mention(o, "color") for o in objs]
        caption = " and ".join(m.text() for m in ms)
        row = {"image_id": ts.file_name.removesuffix(".jpg"), "x": 0, "y": 0, "width": image_size,
               "height": image_size, "caption": caption}
        swaps = []
        for i in range(len(ms)):
            for j in range(i + 1, len(ms)):
                if ms[i].get("color") == ms[j].get("color"):
                    continue
                new = list(ms)
                new[i], new[j] = ms[i].with_attr("color", ms[j].get("color")), ms[j].with_attr("color", ms[i].get("color"))
                if not _true(ts.scene, *new):
                    swaps.append(" and ".join(m.text() for m in new))
        atoms = []
        for i in range(len(ms)):
            for c in colors:
                new = list(ms)
                new[i] = ms[i].with_attr("color", c)
                if c != ms[i].get("color") and not _true(ts.scene, *new):
                    atoms.append(" and ".join(m.text() for m in new))
        for name, negs in (("shapes_hard_negs_swap", swaps), ("shapes_hard_negs_atom", atoms)):
            negs = sorted(set(negs))
            rng.shuffle(negs)
            if negs:
                files[name].append({**row, "hard_negs": repr(negs[:negatives])})
    return files


def zeroshot(scenes: list[TestScene], synth_dir: Path, out: Path, per_class: int) -> dict[str, int]:
    """Each object cropped from its test image into <shape>/ (at most per_class per shape)."""
    counts = Counter()
    for ts in scenes:
        with Image.open(Path(synth_dir) / "coco/test" / ts.file_name) as im:
            for k, (o, (x, y, w, h)) in enumerate(zip(ts.scene.objects, ts.boxes)):
                if counts[o.shape] >= per_class:
                    continue
                folder = out / o.shape
                folder.mkdir(parents=True, exist_ok=True)
                im.crop((x, y, x + w, y + h)).save(folder / f"{ts.image_id:012d}_{k}.png")
                counts[o.shape] += 1
    (out / "templates.txt").write_text("\n".join(ZEROSHOT_TEMPLATES) + "\n")
    return dict(sorted(counts.items()))


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def spread(scenes: list, count: int | None) -> list:
    """count scenes evenly spaced over the test split (held-out and seen in their proportions); all if None."""
    if count is None or count >= len(scenes):
        return scenes
    return [scenes[i * len(scenes) // count] for i in range(count)]


def write_release_formats(synth_dir: Path, out: Path, seed: int, vocab: dict[str, list[str]], image_size: int,
                          per_image: int = 2, crepe_negatives: int = 5, zeroshot_per_class: int = 100,
                          max_images: int | None = None) -> dict:
    """Everything under `out`, from max_images test scenes (all if None); returns the item counts per file."""
    scenes = spread(test_scenes(synth_dir), max_images)
    held = sorted(f"coco/test/{ts.file_name}" for ts in scenes if ts.held_out)
    held_names = sorted(ts.file_name for ts in scenes if ts.held_out)
    counts = {}
    relation, attribution = aro(scenes, seed, per_image)
    _dump(out / "aro/visual_genome_relation.json", relation)
    _dump(out / "aro/visual_genome_attribution.json", attribution)
    _dump(out / "aro" / HELD_OUT_FILE, held)
    counts |= {"aro/visual_genome_relation": len(relation), "aro/visual_genome_attribution": len(attribution)}
    _dump(out / "karpathy/coco_karpathy_test.json", karpathy(scenes))
    _dump(out / "karpathy" / HELD_OUT_FILE, held)
    counts["karpathy/coco_karpathy_test"] = len(scenes)
    for piece, items in valse(scenes, seed).items():
        _dump(out / f"valse/data/{piece}.json", items)
        counts[f"valse/{piece}"] = len(items)
    _dump(out / "valse/data" / HELD_OUT_FILE, held_names)
    for name, items in vl_checklist(scenes, seed, vocab).items():
        _dump(out / f"vl-checklist/data/{name}.json", items)
        counts[f"vl-checklist/{name}"] = len(items)
    _dump(out / "vl-checklist/data" / HELD_OUT_FILE, held)
    for name, rows in crepe(scenes, seed, image_size, crepe_negatives).items():
        path = out / "crepe" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["image_id", "x", "y", "width", "height", "caption", "hard_negs"])
            w.writeheader()
            w.writerows(rows)
        counts[f"crepe/{name}"] = len(rows)
    _dump(out / "crepe" / HELD_OUT_FILE, held_names)
    counts |= {f"zeroshot/{k}": v for k, v in zeroshot(scenes, synth_dir, out / "zeroshot", zeroshot_per_class).items()}
    return counts
