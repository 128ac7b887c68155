"""The suite end to end on the tiny world: its test split written in every release format, read back by the
readers, scored through the CLI (a model and the blind baselines), the disk cache, and rescoring from the
per-item scores alone."""

import json
from pathlib import Path

import pytest
import torch

from compclip.cli import main
from compclip.data.release_formats import write_release_formats
from compclip.evaluation.encode import EmbeddingCache
from compclip.evaluation.scorers import ModelScorer
from compclip.evaluation.suite import CI, evaluate_benchmark, summarize_scores
from compclip.models.checkpoint import save_checkpoint
from compclip.models.factory import create


@pytest.fixture(scope="module")
def suite(world, tmp_path_factory):
    p, manifest = world
    tmp = tmp_path_factory.mktemp("suite")
    s = p.synth
    counts = write_release_formats(Path(s.out_dir), tmp / "formats", p.seed,
                                   {"color": s.colors, "shape": s.shapes, "size": s.sizes, "pattern": s.patterns},
                                   s.image_size, per_image=2, crepe_negatives=5, zeroshot_per_class=5)
    torch.manual_seed(0)
    ckpt = tmp / "micro.pt"
    save_checkpoint(ckpt, {"model_name": "compclip-micro", "model": create("compclip-micro").model.state_dict()})
    f, synth = tmp / "formats", Path(s.out_dir)
    runs = {"aro-relation": (f / "aro/visual_genome_relation.json", synth),
            "aro-attribution": (f / "aro/visual_genome_attribution.json", synth),
            "coco-order": (f / "karpathy/coco_karpathy_test.json", synth),
            "retrieval": (f / "karpathy/coco_karpathy_test.json", synth),
            "valse": (f / "valse/data", synth / "coco/test"), "vl-checklist": (f / "vl-checklist/data", synth),
            "crepe": (f / "crepe", synth / "coco/test"), "zeroshot": (f / "zeroshot", None)}
    return p, tmp, ckpt, counts, runs


def test_every_format_is_written_and_read_back_without_a_skip(suite):
    p, tmp, ckpt, counts, runs = suite
    assert all(n > 0 for n in counts.values()), counts
    from compclip.evaluation.suite import BENCHMARKS

    for name, (data, images) in runs.items():
        loaded = BENCHMARKS[name].read(data, images, **({"seed": 0} if name == "coco-order" else {}))
        assert loaded.items and not [s for s in loaded.skipped if s.reason != "no_distinct_perturbation"], name


def test_cli_scores_every_benchmark_with_n_cis_and_held_out_subsets(suite, tmp_path):
    p, tmp, ckpt, counts, runs = suite
    for name, (data, images) in runs.items():
        out = tmp_path / f"{name}.json"
        args = ["evaluate", name, "--data", str(data), "--model", str(ckpt), "--out", str(out),
                "--bootstrap-samples", "50", "--cache-dir", str(tmp_path / "emb"), "--device", "cpu"]
        assert main(args + (["--images", str(images)] if images else [])) == 0, name
        r = json.loads(out.read_text())
        assert any(v["n"] > 0 for v in r["aggregate"].values()), name
        assert all(v["ci_low"] <= v["accuracy"] <= v["ci_high"] for v in r["aggregate"].values() if v["n"]), name
        assert Path(r["scores_file"]).exists() and r["skipped"]["total"] >= 0
    aro = json.loads((tmp_path / "aro-relation.json").read_text())["files"]["visual_genome_relation"]
    assert aro["held_out"]["n"] + aro["seen"]["n"] == aro["n"] and aro["held_out"]["n"] > 0
    assert aro["over_context"] == {"items": 0, "tied_by_cut": 0}
    # the tiny world has no attribute pair seen 25 times: ARO's macro is then over no group, and says so
    vga = json.loads((tmp_path / "aro-attribution.json").read_text())["aggregate"]
    assert vga["micro"]["n"] > 0 and vga["macro"]["groups"] == 0 and vga["macro"]["n"] == 0


def test_disk_cache_second_run_encodes_nothing_and_rescoring_needs_no_model(suite, tmp_path):
    p, tmp, ckpt, counts, runs = suite
    from compclip.models.factory import load_model

    data, images = runs["crepe"]
    results = []
    for run in range(2):
        cache = EmbeddingCache(load_model(str(ckpt)), "cpu", 64, store=tmp_path / "emb")
        results.append(evaluate_benchmark("crepe", data, images, ModelScorer(cache, "m"), CI(50), tmp_path / f"c{run}.json"))
        if run == 0:
            assert cache.counts["images/encoded"] > 0 and cache.counts["images/from_disk"] == 0
        else:
            assert cache.counts["images/encoded"] == 0 and cache.counts["texts/encoded"] == 0
            assert cache.counts["images/from_disk"] > 0
    assert results[0]["aggregate"] == results[1]["aggregate"]
    again = summarize_scores(Path(results[0]["scores_file"]), CI(50))
    assert again["files"] == results[0]["files"] and again["aggregate"] == results[0]["aggregate"]
    # another model's weights get other keys: nothing stale is read
    torch.manual_seed(1)
    other = create("compclip-micro")
    cache = EmbeddingCache(other, "cpu", 64, store=tmp_path / "emb")
    evaluate_benchmark("crepe", data, images, ModelScorer(cache, "other"), CI(50))
    assert cache.counts["images/from_disk"] == 0 and cache.counts["images/encoded"] > 0


def test_blind_baselines_through_the_cli(suite, tmp_path, tiny_mlm_folder):
    p, tmp, ckpt, counts, runs = suite
    import pandas as pd

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(pd.read_parquet(Path(p.ingest.out_dir) / "manifest.parquet")["caption"]))
    data, images = runs["aro-relation"]
    out = tmp_path / "blind.json"
    assert main(["evaluate", "aro-relation", "--data", str(data), "--images", str(images), "--blind", "ngram",
                 "--blind-corpus", str(corpus), "--out", str(out), "--bootstrap-samples", "50"]) == 0
    r = json.loads(out.read_text())
    assert r["model"] == "blind:ngram" and r["aggregate"]["macro"]["n"] > 0
    data, images = runs["retrieval"]
    assert main(["evaluate", "retrieval", "--data", str(data), "--images", str(images), "--blind", "ngram",
                 "--blind-corpus", str(corpus), "--out", str(out)]) == 0
    assert "not_applicable" in json.loads(out.read_text())
    data, images = runs["valse"]
    assert main(["evaluate", "valse", "--data", str(data), "--images", str(images), "--blind",
                 f"mlm:{tiny_mlm_folder}", "--out", str(out), "--bootstrap-samples", "50"]) == 0
    assert json.loads(out.read_text())["aggregate"]["avg"]["n"] > 0
    assert main(["evaluate", "valse", "--data", str(data), "--images", str(images), "--out", str(out)]) == 1


@pytest.fixture(scope="module")
def tiny_mlm_folder(tmp_path_factory):
    from tests.tiny_mlm import build_tiny_mlm

    return build_tiny_mlm(tmp_path_factory.mktemp("mlm"), ["a red circle is to the left of a blue square",
                                                          "there are 3 shapes", "a green star above a cyan cross"])


def test_bigram_blind_score_by_hand():
    import math

    from compclip.evaluation.text_only import BigramModel

    lm = BigramModel(["a b", "a c"], interpolation=0.5)
    # tokens <s> a b </s>; unigram counts (a 2, b 1, c 1, </s> 2): total 6, vocab 5
    p_a = 0.5 * 1.0 + 0.5 * (2 + 1) / 11
    p_b = 0.5 * 0.5 + 0.5 * (1 + 1) / 11
    p_end = 0.5 * 1.0 + 0.5 * (2 + 1) / 11
    assert lm("a b") == pytest.approx(math.log(p_a) + math.log(p_b) + math.log(p_end))
    assert lm("a b") > lm("b a")


def test_texts_over_the_context_are_counted_and_a_cut_tie_is_wrong(suite, tmp_path):
    p, tmp, ckpt, counts, runs = suite
    from compclip.models.factory import load_model

    bundle = load_model(str(ckpt))
    ctx = bundle.tokenizer.context_length
    long = "a " * ctx + "red square"  # the difference lies past the context: the cut makes them identical
    data, images = runs["aro-relation"]
    item = json.loads(Path(data).read_text())[0]
    path = tmp_path / "visual_genome_relation.json"
    path.write_text(json.dumps([item, {**item, "true_caption": long, "false_caption": long.replace("red", "blue")},
                                {**item, "true_caption": long + " and more", "false_caption": "short"}]))
    r = evaluate_benchmark("aro-relation", path, images, ModelScorer(EmbeddingCache(bundle, "cpu", 8), "m"), CI(20))
    f = r["files"]["visual_genome_relation"]
    assert f["over_context"] == {"items": 2, "tied_by_cut": 1} and f["n"] == 3
    rows = [json.loads(line) for line in open(r.get("scores_file", "/dev/null"))][1:] if "scores_file" in r else None
    assert rows is None  # no --out: nothing written
    out = tmp_path / "o.json"
    r = evaluate_benchmark("aro-relation", path, images, ModelScorer(EmbeddingCache(bundle, "cpu", 8), "m"), CI(20), out)
    tied = [json.loads(line) for line in open(r["scores_file"])][1:][1]
    assert tied["tied_by_cut"] and tied["scores"][0] == tied["scores"][1]  # a tie, counted as wrong


def test_formats_from_a_spread_of_the_test_split_keep_its_held_out_share(world, tmp_path):
    from compclip.data.release_formats import spread, test_scenes

    assert spread(list(range(10)), 4) == [0, 2, 5, 7] and spread(list(range(3)), 5) == [0, 1, 2]
    assert spread(list(range(3)), None) == [0, 1, 2]
    p, _ = world
    s = p.synth
    scenes = test_scenes(Path(s.out_dir))
    half = len(scenes) // 2
    counts = write_release_formats(Path(s.out_dir), tmp_path, p.seed,
                                   {"color": s.colors, "shape": s.shapes, "size": s.sizes, "pattern": s.patterns},
                                   s.image_size, zeroshot_per_class=5, max_images=half)
    assert counts["karpathy/coco_karpathy_test"] == half
    held = json.loads((tmp_path / "karpathy/held_out_images.json").read_text())
    expected = sum(ts.held_out for ts in spread(scenes, half))
    assert len(held) == expected and 0 < expected < half
