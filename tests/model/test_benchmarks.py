"""Hard-positive and abstraction-level benchmarks: built from the tiny world, scored exactly, compared."""

import json

import pytest
import numpy as np
import torch

from compclip.evaluation.benchmarks import build_benchmarks
from compclip.evaluation.compare import compare
from compclip.evaluation.evaluate import score_abstraction, score_hard_positives
from compclip.data.scenes import SceneChecker


class StubCache:
    """image_matrix/text_matrix from fixed 2-d unit vectors, so every score is known."""

    def __init__(self, images, texts):
        self.images, self.texts = images, texts

    def image_matrix(self, keys):
        return torch.tensor([self.images[k] for k in keys], dtype=torch.float32)

    def text_matrix(self, keys):
        return torch.tensor([self.texts[k] for k in keys], dtype=torch.float32)

    def usable(self, keys):
        return np.array([k in self.images for k in keys])

    def skipped(self, keys):
        return {"missing_image": sum(k not in self.images for k in keys)} if any(k not in self.images for k in keys) else {}


def test_hard_positive_metrics_by_hand():
    # image i scores: s(c), s(c_p), s(c_n) as the first coordinate of each text (the image is [1, 0])
    scores = [(0.9, 0.8, 0.1),   # c > c_n and c_p > c_n: augmented-correct
              (0.9, 0.1, 0.5),   # c > c_n > c_p: brittle
              (0.2, 0.9, 0.5),   # c_p > c_n > c: brittle
              (0.1, 0.2, 0.6)]   # both below c_n: wrong, not brittle
    items, texts = [], {}
    for i, (c, p, n) in enumerate(scores):
        for name, v in (("c", c), ("p", p), ("n", n)):
            texts[f"{name}{i}"] = [v, 0.0]
        items.append({"source": "swap_att" if i < 2 else "replace_rel", "image_path": "img", "true_caption": f"c{i}",
                      "positive_caption": f"p{i}", "false_caption": f"n{i}"})
    r = score_hard_positives(StubCache({"img": [1.0, 0.0]}, texts), items, 50, 0.95, 0)
    assert r["all"]["original"]["accuracy"] == 0.5
    assert r["all"]["augmented"]["accuracy"] == 0.25
    assert r["all"]["brittleness"]["accuracy"] == 0.5
    assert r["swap_att"]["brittleness"]["accuracy"] == 0.5 and r["replace_rel"]["augmented"]["accuracy"] == 0.0


def test_abstraction_levels_by_hand_and_equal_texts_left_out():
    images = {"a": [1.0, 0.0], "d": [0.0, 1.0]}
    texts = {"red star": [0.9, 0.1], "blue star": [0.2, 0.8], "star": [0.5, 0.5]}
    items = [{"image_path": "a", "distractor_path": "d",
              "texts": {"level2": "red star", "level3": "star"},
              "distractor_texts": {"level2": "blue star", "level3": "star"}}]
    r = score_abstraction(StubCache(images, texts), items, 50, 0.95, 0)
    assert r["level2"]["i2t"]["accuracy"] == 1.0 and r["level2"]["t2i"]["accuracy"] == 1.0
    assert r["level3"]["i2t"]["n"] == 0  # "star" vs "star" cannot be told apart


@pytest.fixture(scope="module")
def benchmarks(generated, tmp_path_factory):
    p, _ = generated
    out = tmp_path_factory.mktemp("bench")
    p = p.model_copy(update={"benchmarks": p.benchmarks.model_copy(update={"out_dir": out})})
    return p, build_benchmarks(p), out


def test_benchmark_positives_are_true_and_distractors_are_hard_negatives(benchmarks):
    p, summary, out = benchmarks
    hp = json.loads((out / "hard_positives.json").read_text())
    assert summary["hard_positive_items"] == len(hp) > 0
    checker = SceneChecker(p.synth.out_dir / "scenes.jsonl")
    for it in hp:
        assert checker.verdict(it["image_path"], it["positive_caption"]) == "true"
        assert checker.verdict(it["image_path"], it["true_caption"]) == "true"
        assert it["positive_caption"] not in (it["true_caption"], it["false_caption"])
    ab = json.loads((out / "abstraction.json").read_text())
    import pandas as pd
    hn = pd.read_parquet(p.concepts.out_dir / "hard_negatives.parquet")
    pairs = set(zip(hn["concept"], hn["negative"]))
    assert ab and all((it["concept"], it["distractor_concept"]) in pairs for it in ab)
    assert set(ab[0]["texts"]) == set(p.benchmarks.levels)


def test_compare_writes_table_json_and_plot(tmp_path):
    ci = {"accuracy": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 10}
    paths = {}
    for m in ("clip", "ce_clip"):
        d = tmp_path / m
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({
            "sugarcrepe": {"swap_att": ci, "swap_obj": ci}, "retrieval": {"i2t_R@1": 0.3, "t2i_R@1": 0.2},
            "hard_positives": {"all": {"original": ci, "augmented": ci, "brittleness": ci}},
            "abstraction": {"level1": {"i2t": ci, "t2i": ci}}}))
        paths[m] = d / "metrics.json"
    compare(paths, tmp_path / "cmp")
    assert "ce_clip" in (tmp_path / "cmp/compare.md").read_text()
    rows = json.loads((tmp_path / "cmp/compare.json").read_text())
    assert {"method": "clip", "metric": "sugarcrepe/swap_att", "value": 0.6, "ci_low": 0.5, "ci_high": 0.7,
            "n": 10} in rows
    assert (tmp_path / "cmp/compare.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no metrics"):
        compare({"x": tmp_path / "missing.json"}, tmp_path / "cmp2")


def test_comparison_says_how_each_method_was_trained():
    from compclip.evaluation.suite_report import markdown

    ci = {"accuracy": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 10}
    suite = {"sugarcrepe": {"aggregate": {"mean": ci}}}
    cols = {"clip": {"suite": suite, "training": {"steps": 300, "batch_size": 64, "negative_rules": []}},
            "negclip": {"suite": suite, "training": {"steps": 300, "batch_size": 64,
                                                     "negative_rules": ["swap_nouns", "sc_swap_att"]}},
            "blind": {"suite": suite}}
    md = markdown(cols, ["sugarcrepe"])
    assert "| training | clip | negclip |" in md
    assert "| fine-tuning steps | 300 | 300 |" in md and "| negative rules | – | swap_nouns, sc_swap_att |" in md
    assert "| training |" not in markdown({"blind": {"suite": suite}}, ["sugarcrepe"])


def test_suite_agrees_with_the_stage_scorers_and_formats_are_written(benchmarks):
    """The suite's readers and scorers against evaluate.py's functions, on the benchmarks stage's files and
    one model: the same n and the same decisions; and the release formats are there."""
    from pathlib import Path

    from compclip.evaluation.encode import EmbeddingCache
    from compclip.evaluation.scorers import ModelScorer
    from compclip.evaluation.suite import CI, evaluate_benchmark
    from compclip.models.factory import create

    p, summary, out = benchmarks
    assert summary["formats"]["aro/visual_genome_relation"] > 0 and (out / "formats/vl-checklist/data").is_dir()
    torch.manual_seed(0)
    cache = EmbeddingCache(create("compclip-micro"), "cpu", 64)
    hp_items, ab_items = (json.loads((out / f).read_text()) for f in ("hard_positives.json", "abstraction.json"))
    legacy_hp = score_hard_positives(cache, hp_items, 50, 0.95, 0)
    legacy_ab = score_abstraction(cache, ab_items, 50, 0.95, 0)
    scorer = ModelScorer(cache, "micro")
    hp = evaluate_benchmark("hard-positives", out / "hard_positives.json", Path("."), scorer, CI(50))
    ab = evaluate_benchmark("abstraction", out / "abstraction.json", Path("."), scorer, CI(50))
    for k in ("original", "augmented", "brittleness"):
        assert hp["aggregate"][k] == legacy_hp["all"][k], k
    for level, figures in legacy_ab.items():
        if figures["i2t"]["n"]:
            assert ab["files"][level] == figures, level
