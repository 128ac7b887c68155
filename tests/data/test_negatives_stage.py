"""The negatives step on the tiny world: one row per caption and rule, cache, coverage, scene check."""

import json

import pandas as pd

from compclip.text.negatives_table import build_negatives


def test_negatives_table_cache_and_scene_check(world, tmp_path):
    p, manifest = world
    cfg = p.negatives.model_copy(update={"out_dir": tmp_path / "neg", "scenes": p.synth.out_dir / "scenes.jsonl",
                                         "chunk_size": 100, "splits": ["train", "val", "test"]})
    first = build_negatives(manifest, cfg, p.seed)
    m = pd.read_parquet(manifest)
    table = pd.read_parquet(tmp_path / "neg/negatives.parquet")
    # nothing dropped: a rule that does not apply is valid=0; whole-image captions also get 2 scene-graph rows
    assert len(table) == len(m) * len(cfg.rules) + 2 * int(m["bbox_x"].isna().sum())
    assert set(table["sample_id"]) == set(m["sample_id"])
    assert (table.loc[table.valid == 1, "negative"] != table.loc[table.valid == 1, "caption"]).all()
    assert (table.loc[table.valid == 0, "negative"] == "###").all()
    assert first["execution"]["unique_captions_generated"] == m["caption"].nunique()
    written = (tmp_path / "neg/summary.json").read_bytes()
    cov = first["coverage"]
    assert cov["swap_nouns"]["fraction"] > 0.5 and cov["replace_adj"]["fraction"] > 0.9
    assert first["scene_check"]["swap_nouns"]["false_fraction"] > 0.95

    second = build_negatives(manifest, cfg, p.seed)
    assert second["execution"]["unique_captions_generated"] == 0
    assert second["execution"]["cache_hits"] >= m["caption"].nunique()
    assert pd.read_parquet(tmp_path / "neg/negatives.parquet").equals(table)  # same bytes of content
    assert (tmp_path / "neg/summary.json").read_bytes() == written  # the warm cache is not a result


def test_scene_graph_negatives_are_exact(world, tmp_path):
    p, manifest = world
    cfg = p.negatives.model_copy(update={"out_dir": tmp_path / "neg", "scenes": p.synth.out_dir / "scenes.jsonl",
                                         "rules": ["swap_nouns", "replace_adj"]})
    summary = build_negatives(manifest, cfg, p.seed)
    for rule in ("scene_graph_relation", "scene_graph_attribute"):
        check = summary["scene_check"][rule]
        assert check.get("true", 0) == 0 and check.get("unparseable", 0) == 0 and check["false"] > 100
    table = pd.read_parquet(tmp_path / "neg/negatives.parquet")
    sg = table[table.rule.str.startswith("scene_graph") & (table.valid == 1)]
    assert set(sg["neg_type"]) == {"relation", "attribute"}
    fam = summary["whole_image_captions_with_a_negative_of_family"]
    assert fam["relation"] > 0.7 and fam["attribute"] > 0.9


def test_only_the_configured_splits(world, tmp_path):
    p, manifest = world
    cfg = p.negatives.model_copy(update={"out_dir": tmp_path / "neg", "scenes": None, "rules": ["swap_nouns"]})
    summary = build_negatives(manifest, cfg, p.seed)
    m = pd.read_parquet(manifest)
    table = pd.read_parquet(tmp_path / "neg/negatives.parquet")
    assert set(table["sample_id"]) == set(m.loc[m.split == "train", "sample_id"]) and summary["splits"] == ["train"]


def test_cli_negatives_and_missing_columns(tmp_path, capsys):
    from compclip.cli import main

    bad = tmp_path / "m.parquet"
    pd.DataFrame({"sample_id": ["a"], "caption": ["a dog chasing a cat"]}).to_parquet(bad)
    assert main(["negatives", "--manifest", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "lacks column(s) ['image_path', 'bbox_x', 'split']" in capsys.readouterr().err
    good = tmp_path / "g.parquet"
    pd.DataFrame({"sample_id": ["a"], "caption": ["a dog chasing a cat"], "image_path": ["x.jpg"],
                  "bbox_x": [float("nan")], "split": ["test"]}).to_parquet(good)
    args = ["negatives", "--manifest", str(good), "--out", str(tmp_path / "o"), "--rules", "swap_nouns"]
    assert main([*args, "--unseen-combinations", "keep"]) == 0
    out = pd.read_parquet(tmp_path / "o/negatives.parquet")
    assert out["negative"].tolist() == ["a cat chasing a dog"]
    # no caption says a cat chases a dog: by default that negative is dropped, and kept in the quarantine file
    assert main(args) == 0
    out = pd.read_parquet(tmp_path / "o/negatives.parquet")
    assert out[["negative", "valid"]].values.tolist() == [["###", 0]]
    kept = [json.loads(line) for line in open(tmp_path / "o/unseen_combinations.jsonl")]
    assert kept == [{"sample_id": "a", "caption": "a dog chasing a cat", "negative": "a cat chasing a dog",
                     "rule": "swap_nouns", "combinations": ["rel|cat|chasing|dog"]}]
    summary = json.loads((tmp_path / "o/summary.json").read_text())["unseen_combinations"]
    assert summary["by_rule"]["swap_nouns"] == {"valid": 1, "unseen": 1, "dropped": 1, "unseen_fraction": 1.0}


def test_cache_key_follows_the_rule_code(monkeypatch):
    from compclip.text import negatives_table

    before = negatives_table.code_version()
    monkeypatch.setattr(negatives_table.Path, "read_bytes", lambda self: b"changed")
    assert negatives_table.code_version() != before
