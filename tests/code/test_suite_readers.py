"""Each benchmark reader on small files in the released format, malformed records included; and the
metrics on hand-computed scores (ARO macro with its exclusions, VALSE's annotator filter, CREPE ranks,
VL-CheckList means, ATA and brittleness on four items)."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from compclip.data.records import SourceError
from compclip.evaluation.readers import aro, crepe, karpathy, valse, vlchecklist, zeroshot
from compclip.evaluation.suite import CI, summarize

CI_ = CI(200, 0.95, 0)


@pytest.fixture()
def images(tmp_path):
    root = tmp_path / "images"
    (root / "VG_100K").mkdir(parents=True)
    for name in ("VG_100K/1.jpg", "VG_100K/2.jpg", "a.jpg", "b.jpg"):
        Image.new("RGB", (40, 30), "white").save(root / name)
    return root


def _row(file, scores, group="", subset=""):
    return {"file": file, "key": "k", "group": group, "subset": subset, "scores": scores}


def test_aro_relation_reads_the_release_and_skips_with_reasons(tmp_path, images):
    item = {"image_path": "VG_100K/1.jpg", "bbox_x": 2, "bbox_y": 3, "bbox_w": 20, "bbox_h": 10,
            "relation_name": "on", "true_caption": "the cup is on the table", "false_caption": "the table is on the cup"}
    data = [item, {**item, "false_caption": None}, {**item, "image_path": "VG_100K/9.jpg"},
            {**item, "bbox_x": 100}, {**item, "bbox_w": 0}, {**item, "image_path": "../x.jpg"}, "junk",
            # an image named again: checked once per benchmark, each item still kept or skipped on its own
            {**item, "image_path": "VG_100K/9.jpg"}, {**item, "image_path": "../x.jpg"}, item]
    path = tmp_path / "visual_genome_relation.json"
    path.write_text(json.dumps(data))
    loaded = aro.read_vg_relation(path, images)
    assert [it.key for it in loaded.items] == ["0", "9"] and loaded.items[0].image == loaded.items[1].image
    it = loaded.items[0]
    assert it.texts == ("the cup is on the table", "the table is on the cup") and it.group == "on"
    assert it.image.box == (2.0, 3.0, 20.0, 10.0) and it.image.path.endswith("VG_100K/1.jpg")
    reasons = {(s.record, s.reason) for s in loaded.skipped}
    assert reasons == {("1", "missing_key"), ("2", "missing_image"), ("3", "box_outside_image"), ("4", "empty_box"),
                       ("5", "bad_image_path"), ("6", "not_an_object"), ("7", "missing_image"),
                       ("8", "bad_image_path")}
    assert all(s.file == "visual_genome_relation" for s in loaded.skipped)


def test_aro_macro_accuracy_leaves_out_the_symmetric_relations_and_rare_pairs():
    rows = [_row("r", [1, 0], "on"), _row("r", [0, 1], "on"), _row("r", [1, 0], "holding"),
            _row("r", [0, 1], "next to"), _row("r", [0, 1], "next to")]  # "next to" is on ARO's excluded list
    agg = summarize("aro-relation", rows, CI_)["aggregate"]
    assert agg["macro"]["accuracy"] == pytest.approx((0.5 + 1.0) / 2) and agg["macro"]["n"] == 3
    assert agg["macro"]["groups"] == 2 and agg["micro"]["accuracy"] == pytest.approx(2 / 5)
    assert agg["macro"]["ci_low"] <= agg["macro"]["accuracy"] <= agg["macro"]["ci_high"]
    # VG-Attribution: only attribute pairs seen at least 25 times count
    rows = [_row("a", [1, 0], "red_blue")] * 20 + [_row("a", [0, 1], "red_blue")] * 5 + [_row("a", [0, 1], "big_small")] * 3
    agg = summarize("aro-attribution", rows, CI_)["aggregate"]
    assert agg["macro"]["accuracy"] == pytest.approx(0.8) and agg["macro"]["n"] == 25


def test_a_tie_is_wrong():
    files = summarize("sugarcrepe", [_row("swap_att", [0.5, 0.5]), _row("swap_att", [0.6, 0.5])], CI_)["files"]
    assert files["swap_att"]["accuracy"] == 0.5


def test_valse_keeps_items_two_annotators_accept_and_ranks_pairwise(tmp_path, images):
    rec = {"dataset": "coco_2017", "image_file": "a.jpg", "caption": "A cup on a table.", "foil": "A cup under a table.",
           "mturk": {"foil": 0, "caption": 3, "other": 0}}
    (tmp_path / "data").mkdir()
    (tmp_path / "data/relations.json").write_text(json.dumps({
        "r:1": rec, "r:2": {**rec, "mturk": {"foil": 1, "caption": 2, "other": 0}},
        "r:3": {**rec, "mturk": {"foil": 2, "caption": 1, "other": 0}}, "r:4": {**rec, "foil": None}}))
    (tmp_path / "data/counting-hard.json").write_text(json.dumps({"c:1": {**rec, "image_file": "b.jpg"}}))
    loaded = valse.read_valse(tmp_path / "data", images)
    assert sorted(it.key for it in loaded.items) == ["c:1", "r:1", "r:2"]
    assert loaded.notes == {"excluded_by_annotators": 1}
    assert [(s.record, s.reason) for s in loaded.skipped] == [("r:4", "missing_key")]
    rows = [_row("relations", [0.9, 0.1], "relations"), _row("relations", [0.1, 0.9], "relations"),
            _row("counting-hard", [0.9, 0.1], "counting-hard")]
    agg = summarize("valse", rows, CI_)["aggregate"]
    assert agg["Relations"]["accuracy"] == 0.5 and agg["Counting"]["accuracy"] == 1.0
    assert agg["avg"]["accuracy"] == pytest.approx(0.75)  # the mean over pieces, not over items


def test_vl_checklist_tree_keys_and_category_means(tmp_path, images):
    root = tmp_path / "data"
    item = ["a.jpg", {"POS": ["red cup"], "NEG": ["blue cup"]}]
    for rel in ("Attribute/vg/color.json", "Attribute/vg/action.json", "Relation/vg/action.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps([item, ["a.jpg", {"POS": []}], ["missing.jpg", item[1]]]))
    loaded = vlchecklist.read_vl_checklist(root, images)
    assert sorted(loaded.files) == ["Attribute/vg/action", "Relation/vg/action", "color"]
    assert {it.group for it in loaded.items} == {"Attribute", "Relation"} and len(loaded.items) == 3
    assert sorted({s.reason for s in loaded.skipped}) == ["missing_image", "missing_key"]
    rows = [_row("color", [1, 0], "Attribute"), _row("color", [1, 0], "Attribute"),
            _row("Attribute/vg/action", [0, 1], "Attribute"), _row("Relation/vg/action", [1, 0], "Relation")]
    agg = summarize("vl-checklist", rows, CI_)["aggregate"]
    assert agg["Attribute"]["accuracy"] == pytest.approx(0.5)  # mean of its files (1.0, 0.0)
    assert agg["Relation"]["accuracy"] == 1.0
    assert agg["mean"]["accuracy"] == pytest.approx(0.75)  # mean of the categories


def test_crepe_csv_ranks_the_caption_among_its_negatives(tmp_path, images):
    path = tmp_path / "prod_vg_hard_negs_swap_complexity_4.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "x", "y", "width", "height", "caption", "hard_negs"])
        w.writerow(["1", "0.0", "0.0", "20.5", "10.0", "a cup on a table", repr(["a table on a cup", "a cup under a table"])])
        w.writerow(["2", "0", "0", "10", "10", "a dog", "not a list ["])
        w.writerow(["3", "0", "0", "10", "10", "a cat", repr(["a hat"])])
    loaded = crepe.read_crepe(path, images)
    assert len(loaded.items) == 1 and loaded.items[0].texts[1:] == ("a table on a cup", "a cup under a table")
    assert loaded.items[0].image.box == (0.0, 0.0, 20.5, 10.0)
    assert {(s.record, s.reason) for s in loaded.skipped} == {("line 3", "missing_key"), ("line 4", "missing_image")}
    rows = [_row("p", [0.5, 0.7, 0.4, 0.5]), _row("p", [0.9, 0.1, 0.2, 0.3])]  # ranks 3 (ties rank below) and 1
    f = summarize("crepe", rows, CI_)["files"]["p"]
    assert f["R@1"]["accuracy"] == 0.5 and f["R@3"]["accuracy"] == 1.0 and f["mean_rank"] == 2.0
    bad = tmp_path / "bad" / "x.csv"
    bad.parent.mkdir()
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="x.csv: needs columns image_id, caption"):
        crepe.read_crepe(bad, images)


def test_hard_positive_metrics_on_four_items():
    # scores are [s(c), s(c_n), s(c_p)]
    rows = [_row("hp", [0.9, 0.5, 0.8], "swap_att"), _row("hp", [0.9, 0.5, 0.3], "swap_att"),
            _row("hp", [0.2, 0.5, 0.8], "replace_rel"), _row("hp", [0.2, 0.5, 0.3], "replace_rel")]
    agg = summarize("hard-positives", rows, CI_)["aggregate"]
    assert agg["original"]["accuracy"] == 0.5
    assert agg["augmented"]["accuracy"] == 0.25  # only item 1: c_n below both c and c_p
    assert agg["brittleness"]["accuracy"] == 0.5  # items 2 (c > c_n > c_p) and 3 (c_p > c_n > c)
    assert agg["augmented"]["n"] == 4


def test_karpathy_and_order(tmp_path, images, monkeypatch):
    path = tmp_path / "coco_karpathy_test.json"
    path.write_text(json.dumps([{"image": "a.jpg", "caption": ["A red cup on a wooden table.", "a cup"]},
                                {"image": "b.jpg"}, {"image": "nope.jpg", "caption": "x"}]))
    loaded = karpathy.read_karpathy(path, images)
    assert len(loaded.items) == 1 and loaded.items[0].captions[1] == "a cup"
    assert {s.reason for s in loaded.skipped} == {"missing_key", "missing_image"}
    a = karpathy.read_order(path, images, seed=3)
    # seeded per caption; the second read takes every tag from the disk cache (spaCy is not run again)
    import compclip.text.nlp as nlp

    meta = nlp.load_spacy().meta
    monkeypatch.setattr(nlp, "load_spacy", lambda name: type("NoTagger", (), {"meta": meta, "pipe": lambda *a, **k: iter(())}))
    b = karpathy.read_order(path, images, seed=3)
    assert [it.texts for it in a.items] == [it.texts for it in b.items]
    first = a.items[0]
    assert first.texts[0] == "a red cup on a wooden table" and first.texts[0] not in first.texts[1:]
    assert len(set(first.texts)) == len(first.texts)
    assert sorted(first.texts[1].split()) == sorted(first.texts[0].split())  # a shuffle keeps the words
    # "a cup": no perturbation differs from it -> skipped with its reason, counted
    assert [(s.record, s.reason) for s in a.skipped if s.reason == "no_distinct_perturbation"] == [("0/1", "no_distinct_perturbation")]


def test_zeroshot_imagefolder(tmp_path):
    for cls in ("red_cup", "dog"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / cls / "1.png")
    (tmp_path / "dog" / "notes.txt").write_text("x")
    loaded = zeroshot.read_zeroshot(tmp_path)
    assert loaded.classnames == ["dog", "red cup"] and loaded.templates == ["a photo of a {}."]
    assert [it.label for it in loaded.items] == [0, 1] and [s.reason for s in loaded.skipped] == ["not_an_image"]
    rows = [{"file": "z", "key": "1", "label": 0, "scores": [0.9, 0.1]}, {"file": "z", "key": "2", "label": 1, "scores": [0.9, 0.1]}]
    assert summarize("zeroshot", rows, CI_)["aggregate"]["top1"]["accuracy"] == 0.5
    (tmp_path / "templates.txt").write_text("no placeholder\n")
    with pytest.raises(SourceError, match="templates need"):
        zeroshot.read_zeroshot(tmp_path)


def test_macro_bootstrap_is_seeded():
    from compclip.evaluation.metrics import macro_with_ci

    rng = np.random.default_rng(0)
    correct, groups = rng.random(300) < 0.7, np.array(list("abc") * 100)
    a = macro_with_ci(correct, groups, {"a", "b", "c"}, 300, 0.95, 1)
    assert a == macro_with_ci(correct, groups, {"a", "b", "c"}, 300, 0.95, 1)
    assert a["ci_low"] < a["accuracy"] < a["ci_high"] and a["n"] == 300
