"""Render the shapes world into the real COCO, Visual Genome and CC3M (img2dataset) formats.

The demo then goes through the same readers as real data. Alongside, it keeps every scene's graph
(`scenes.jsonl`) and SugarCrepe-format benchmarks built from the test split (`sugarcrepe/`) and the
validation split (`sugarcrepe_val/`, for tuning), whose negatives are checked false against the scene graph.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from compclip.config import SynthConfig
from compclip.data.perturb import SUGARCREPE_TYPES
from compclip.data.records import HELD_OUT_FILE
from compclip.data.render import COLORS, SHAPES, object_box, render_scene
from compclip.data.world import (RELATIONS, Description, Holdout, Mention, Scene, SceneSampler, Vocabulary,
                                 render_caption)
from compclip.errors import UserError

VG_URL = "https://cs.stanford.edu/people/rak248/VG_100K/{}.jpg"


@dataclass
class RenderedScene:
    image_id: int
    file_name: str
    split: str
    source: str
    scene: Scene
    held_out: bool
    descriptions: list[Description]


class World:
    """The vocabulary, holdout and sampler a SynthConfig defines."""

    def __init__(self, cfg: SynthConfig, seed: int):
        unknown = sorted(set(cfg.colors) - set(COLORS)) + sorted(set(cfg.shapes) - set(SHAPES))
        if unknown:
            raise UserError(f"params.yaml synth: no renderer for {unknown}; colours: {sorted(COLORS)}, "
                            f"shapes: {list(SHAPES)}")
        self.cfg = cfg
        self.vocab = Vocabulary(tuple(cfg.shapes), tuple(cfg.colors), tuple(cfg.sizes), tuple(cfg.patterns))
        self.holdout = Holdout(frozenset(map(tuple, cfg.holdout.attribute_object)),
                               frozenset(map(tuple, cfg.holdout.relation)))
        self.rng = np.random.default_rng(seed)
        self.sampler = SceneSampler(self.vocab, cfg.grid, cfg.object_count_weights, self.rng)
        self.keep = {"color": 1.0, "size": 0.5, "pattern": 0.5, **cfg.mention_probability}

    def descriptions(self, scene: Scene, n: int) -> list[Description]:
        """n descriptions with distinct captions where the scene allows it."""
        out, seen = [], set()
        for _ in range(n * 10):
            d = self.sampler.describe(scene, self.keep)
            if render_caption(d) not in seen:
                seen.add(render_caption(d))
                out.append(d)
            if len(out) == n:
                break
        return out

    def scenes(self, split: str, count: int, first_id: int, source: str) -> Iterator[RenderedScene]:
        n_held = round(count * self.cfg.holdout.test_fraction) if split == "test" else 0
        for k in range(count):
            held = k < n_held
            scene = self.sampler.scene_where(held, self.holdout)
            image_id = first_id + k
            yield RenderedScene(image_id, f"{image_id:012d}.jpg", split, source, scene, held,
                                self.descriptions(scene, self.cfg.captions_per_image))


def _jpeg(scene: Scene, cfg: SynthConfig) -> bytes:
    buf = io.BytesIO()
    render_scene(scene, cfg.image_size, cfg.grid).save(buf, format="JPEG", quality=cfg.jpeg_quality)
    return buf.getvalue()


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")))


def _scene_record(rs: RenderedScene, cfg: SynthConfig, image_path: str) -> dict:
    objs = rs.scene.objects
    return {
        "image_id": rs.image_id, "source": rs.source, "split": rs.split, "image_path": image_path,
        "held_out": rs.held_out,
        "objects": [{"id": i, "shape": o.shape, "color": o.color, "size": o.size, "pattern": o.pattern,
                     "row": o.row, "col": o.col,
                     "bbox": list(object_box(o, cfg.image_size, cfg.grid))} for i, o in enumerate(objs)],
        "relations": [[i, rel, j] for i, rel, j in rs.scene.true_relations()],
        "captions": [render_caption(d) for d in rs.descriptions],
    }


def _write_coco(world: World, out: Path, scenes_log: list[dict]) -> dict[str, list[RenderedScene]]:
    """COCO captions files per split; returns the val and test scenes (the benchmarks are made from them)."""
    cfg, kept, next_id, ann_id = world.cfg, {"val": [], "test": []}, 1, 1
    for split in ("train", "val", "test"):
        count = getattr(cfg.scenes, split)
        images, annotations = [], []
        img_dir = out / "coco" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        for rs in tqdm(world.scenes(split, count, next_id, "coco"), total=count, desc=f"synth coco/{split}"):
            (img_dir / rs.file_name).write_bytes(_jpeg(rs.scene, cfg))
            images.append({"id": rs.image_id, "file_name": rs.file_name, "width": cfg.image_size,
                           "height": cfg.image_size})
            for d in rs.descriptions:
                annotations.append({"id": ann_id, "image_id": rs.image_id, "caption": render_caption(d)})
                ann_id += 1
            scenes_log.append(_scene_record(rs, cfg, f"coco/{split}/{rs.file_name}"))
            if split in kept:
                kept[split].append(rs)
        next_id += count
        _write_json(out / "coco" / "annotations" / f"captions_{split}.json", {
            "info": {"description": "compclip shapes world", "version": "1.0"},
            "licenses": [], "images": images, "annotations": annotations})
    return kept


def _box(o, cfg) -> dict:
    x, y, w, h = object_box(o, cfg.image_size, cfg.grid)
    return {"x": x, "y": y, "w": w, "h": h}


def _write_vg(world: World, out: Path, first_id: int, scenes_log: list[dict]) -> None:
    cfg = world.cfg
    vg = out / "vg"
    (vg / "VG_100K").mkdir(parents=True, exist_ok=True)
    image_data, objects, attributes, relationships, regions = [], [], [], [], []
    obj_id = rel_id = region_id = 1
    for rs in tqdm(world.scenes("train", cfg.vg_scenes, first_id, "vg"), total=cfg.vg_scenes, desc="synth vg"):
        iid = rs.image_id
        (vg / "VG_100K" / f"{iid}.jpg").write_bytes(_jpeg(rs.scene, cfg))
        image_data.append({"image_id": iid, "url": VG_URL.format(iid), "width": cfg.image_size,
                           "height": cfg.image_size, "coco_id": None, "flickr_id": None})
        ids = list(range(obj_id, obj_id + len(rs.scene.objects)))
        obj_id += len(ids)
        objects.append({"image_id": iid, "objects": [
            {"object_id": i, **_box(o, cfg), "names": [o.shape], "synsets": []}
            for i, o in zip(ids, rs.scene.objects)]})
        attributes.append({"image_id": iid, "attributes": [
            {"object_id": i, **_box(o, cfg), "names": [o.shape], "attributes": [o.size, o.pattern, o.color]}
            for i, o in zip(ids, rs.scene.objects)]})
        rels = []
        for a, rel, b in rs.scene.true_relations():
            oa, ob = rs.scene.objects[a], rs.scene.objects[b]
            rels.append({"relationship_id": rel_id, "predicate": RELATIONS[rel][0], "synsets": [],
                         "subject": {"object_id": ids[a], "name": oa.shape, **_box(oa, cfg)},
                         "object": {"object_id": ids[b], "name": ob.shape, **_box(ob, cfg)}})
            rel_id += 1
        relationships.append({"image_id": iid, "relationships": rels})
        # Region descriptions: whole-image captions plus one fully described phrase per object.
        regs = [{"region_id": region_id + k, "image_id": iid, "phrase": render_caption(d), "x": 0, "y": 0,
                 "width": cfg.image_size, "height": cfg.image_size} for k, d in enumerate(rs.descriptions)]
        region_id += len(regs)
        for o in rs.scene.objects:
            m = Mention(o.shape, (("size", o.size), ("pattern", o.pattern), ("color", o.color)))
            b = _box(o, cfg)
            regs.append({"region_id": region_id, "image_id": iid, "phrase": m.text(), "x": b["x"], "y": b["y"],
                         "width": b["w"], "height": b["h"]})
            region_id += 1
        regions.append({"id": iid, "regions": regs})
        scenes_log.append(_scene_record(rs, cfg, f"vg/VG_100K/{iid}.jpg"))
    for name, obj in [("image_data", image_data), ("objects", objects), ("attributes", attributes),
                      ("relationships", relationships), ("region_descriptions", regions)]:
        _write_json(vg / f"{name}.json", obj)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: same seed, same bytes
    tar.addfile(info, io.BytesIO(data))


def _write_cc3m(world: World, out: Path, first_id: int, scenes_log: list[dict]) -> None:
    """Shards as img2dataset's webdataset writer lays them out: {shard:05d}.tar with key.jpg/.txt/.json."""
    cfg = world.cfg
    root = out / "cc3m"
    root.mkdir(parents=True, exist_ok=True)
    per = cfg.cc3m_shard_size
    scenes = world.scenes("train", cfg.cc3m_scenes, first_id, "cc3m")
    for shard in range((cfg.cc3m_scenes + per - 1) // per):
        n = min(per, cfg.cc3m_scenes - shard * per)
        with tarfile.open(root / f"{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for k in tqdm(range(n), desc=f"synth cc3m/{shard:05d}"):
                rs = next(scenes)
                key = f"{shard:05d}{k:04d}"
                caption = render_caption(rs.descriptions[0])
                jpg = _jpeg(rs.scene, cfg)
                meta = {"url": f"https://example.invalid/cc3m/{rs.image_id}.jpg", "caption": caption, "key": key,
                        "status": "success", "error_message": None, "width": cfg.image_size,
                        "height": cfg.image_size, "original_width": cfg.image_size,
                        "original_height": cfg.image_size, "exif": "{}"}
                _tar_add(tar, f"{key}.jpg", jpg)
                _tar_add(tar, f"{key}.txt", caption.encode())
                _tar_add(tar, f"{key}.json", json.dumps(meta).encode())
                rec = _scene_record(rs, cfg, f"cc3m/{shard:05d}.tar#{key}.jpg")
                rec["captions"] = [caption]
                scenes_log.append(rec)
        _write_json(root / f"{shard:05d}_stats.json", {"count": n, "successes": n, "failed_to_download": 0,
                                                       "failed_to_resize": 0, "status_dict": {"success": n}})


def _write_sugarcrepe(world: World, scenes: list[RenderedScene], folder: Path) -> dict[str, int]:
    """One item per (image, type) where the type applies; negatives are false in the scene."""
    files = {t: {} for t in SUGARCREPE_TYPES}
    for rs in tqdm(scenes, desc=f"synth {folder.name}"):
        for name, perturb in SUGARCREPE_TYPES.items():
            for _ in range(world.cfg.benchmark_tries):
                d = world.sampler.describe(rs.scene, world.keep)
                neg = perturb(d, world.vocab, world.rng)
                if neg is None or neg.is_true_in(rs.scene) or render_caption(neg) == render_caption(d):
                    continue
                files[name][str(len(files[name]))] = {"filename": rs.file_name, "caption": render_caption(d),
                                                      "negative_caption": render_caption(neg)}
                break
    for name, items in files.items():
        _write_json(folder / f"{name}.json", items)
    # Not part of the SugarCrepe format: which images show a held-out combination, for a separate score.
    _write_json(folder / HELD_OUT_FILE, sorted(rs.file_name for rs in scenes if rs.held_out))
    return {name: len(items) for name, items in files.items()}


def synthesize(cfg: SynthConfig, seed: int) -> dict:
    """Write the whole shapes world under cfg.out_dir and return a summary of what was written."""
    out = Path(cfg.out_dir)
    world = World(cfg, seed)
    scenes_log: list[dict] = []
    scenes = _write_coco(world, out, scenes_log)
    n_coco = cfg.scenes.train + cfg.scenes.val + cfg.scenes.test
    _write_vg(world, out, 1_000_000 + 1, scenes_log)
    _write_cc3m(world, out, 2_000_000 + 1, scenes_log)
    counts = _write_sugarcrepe(world, scenes["test"], out / "sugarcrepe")
    # the validation split's benchmark, for tuning (the test split's is never seen by the tune stage)
    val_counts = _write_sugarcrepe(world, scenes["val"], out / "sugarcrepe_val") if scenes["val"] else {}
    with open(out / "scenes.jsonl", "w") as f:
        for rec in scenes_log:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    summary = {"coco_images": n_coco, "vg_images": cfg.vg_scenes, "cc3m_images": cfg.cc3m_scenes,
               "test_held_out_images": sum(rs.held_out for rs in scenes["test"]), "sugarcrepe": counts,
               "sugarcrepe_val": val_counts}
    _write_json(out / "summary.json", summary)
    return summary
