"""The shapes world: deterministic bytes, real formats, holdout respected, benchmark negatives false."""

import hashlib
import json
import tarfile
from pathlib import Path

from compclip.data.synth import synthesize
from compclip.evaluation.sugarcrepe import HELD_OUT_FILE
from compclip.data.world import (Description, Mention, Scene, SceneObject, Vocabulary, parse_caption,
                                 render_caption)
from tests.conftest import tiny_params


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def small(tmp: Path, seed_dir: str):
    p = tiny_params(tmp / seed_dir)
    return p.synth.model_copy(update={"scenes": p.synth.scenes.model_copy(update={"train": 30, "val": 5, "test": 20}),
                                      "vg_scenes": 6, "cc3m_scenes": 7, "cc3m_shard_size": 4})


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = small(tmp_path, "a"), small(tmp_path, "b"), small(tmp_path, "c")
    synthesize(a, seed=7)
    synthesize(b, seed=7)
    synthesize(c, seed=8)
    da, db, dc = digest_tree(a.out_dir), digest_tree(b.out_dir), digest_tree(c.out_dir)
    assert da == db and len(da) > 50
    assert da.keys() == dc.keys() and da != dc


def test_formats(world):
    p, _ = world
    root = Path(p.synth.out_dir)
    coco = json.loads((root / "coco/annotations/captions_train.json").read_text())
    assert {"images", "annotations", "info", "licenses"} <= set(coco)
    assert set(coco["images"][0]) == {"id", "file_name", "width", "height"}
    assert set(coco["annotations"][0]) == {"id", "image_id", "caption"}
    assert len(coco["annotations"]) == p.synth.scenes.train * p.synth.captions_per_image
    assert (root / "coco/train" / coco["images"][0]["file_name"]).is_file()
    for name in ("image_data", "objects", "attributes", "relationships", "region_descriptions"):
        assert isinstance(json.loads((root / f"vg/{name}.json").read_text()), list)
    rel = json.loads((root / "vg/relationships.json").read_text())
    some = next(r for img in rel for r in img["relationships"])
    assert {"predicate", "subject", "object"} <= set(some) and "object_id" in some["subject"]
    with tarfile.open(root / "cc3m/00000.tar") as tar:
        names = tar.getnames()
    assert names[:3] == ["000000000.jpg", "000000000.txt", "000000000.json"]
    files = sorted(f.stem for f in (root / "sugarcrepe").glob("*.json") if f.name != HELD_OUT_FILE)
    assert files == sorted(["add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att",
                            "swap_obj"])
    item = json.loads((root / "sugarcrepe/swap_att.json").read_text())["0"]
    assert set(item) == {"filename", "caption", "negative_caption"}


def _scene(rec) -> Scene:
    return Scene(tuple(SceneObject(o["shape"], o["color"], o["size"], o["pattern"], o["row"], o["col"]) for o in rec["objects"]))


def test_holdout_only_in_test(world):
    p, _ = world
    held = {tuple(x) for x in p.synth.holdout.attribute_object}
    recs = [json.loads(line) for line in (Path(p.synth.out_dir) / "scenes.jsonl").read_text().splitlines()]
    for r in recs:
        has = any((o["color"], o["shape"]) in held for o in r["objects"])
        if r["split"] != "test":
            assert not has, r
    test = [r for r in recs if r["split"] == "test"]
    assert sum(r["held_out"] for r in test) == round(len(test) * p.synth.holdout.test_fraction)
    # the scene graph's relations are the true ones
    r = next(r for r in recs if len(r["objects"]) >= 2)
    assert all(len(t) == 3 for t in r["relations"])


def test_benchmark_negatives_are_false_and_positives_true(world):
    """Every benchmark caption parsed back and checked against its scene graph."""
    p, _ = world
    root = Path(p.synth.out_dir)
    vocab = Vocabulary(*(tuple(getattr(p.synth, k)) for k in ("shapes", "colors", "sizes", "patterns")))
    scenes = {Path(json.loads(line)["image_path"]).name: json.loads(line)
              for line in (root / "scenes.jsonl").read_text().splitlines()}
    checked = 0
    held_out = set(json.loads((root / "sugarcrepe" / HELD_OUT_FILE).read_text()))
    assert held_out == {Path(r["image_path"]).name for r in scenes.values() if r["held_out"]}
    for f in (root / "sugarcrepe").glob("*.json"):
        if f.name == HELD_OUT_FILE:
            continue
        for item in json.loads(f.read_text()).values():
            rec = scenes[item["filename"]]
            assert rec["split"] == "test"
            scene = _scene(rec)
            pos, neg = parse_caption(item["caption"], vocab), parse_caption(item["negative_caption"], vocab)
            assert pos is not None and neg is not None, item
            assert pos.is_true_in(scene) and not neg.is_true_in(scene), (f.name, item)
            checked += 1
    assert checked > 200


def test_parse_caption_round_trip():
    vocab = Vocabulary(("square", "circle"), ("red", "blue", "orange"), ("small", "large"), ("solid",))
    d = Description((Mention("square", (("size", "small"), ("color", "red"))), Mention("circle"),
                     Mention("square", (("color", "orange"),))), ((0, "left_of", 1),), "there_is")
    text = render_caption(d)
    assert text == "there is a small red square to the left of a circle and an orange square"
    assert parse_caption(text, vocab) == Description(d.mentions, d.relations)
    assert parse_caption("a circle is bigger than a square", vocab).relations == ((0, "bigger_than", 1),)
    assert parse_caption("a purple circle", vocab) is None
    assert parse_caption("a circle to the left of", vocab) is None
