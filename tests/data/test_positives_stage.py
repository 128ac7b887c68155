"""The positives step on the tiny world: MiniLM filter, never equal to a negative, rejections kept."""

import json

import pandas as pd

from compclip.text.negatives_table import build_negatives
from compclip.text.positives_table import SentenceEmbeddings, build_positives, cosine

PAIRS = (["a red square to the left of a blue circle", "a red square to the left of a blue circle",
          "two large striped hearts", "a small green star above a hollow cross"],
         ["a blue circle to the right of a red square", "a man riding a horse on a beach",
          "two big striped hearts", "a hollow cross below a small green star"])


def test_minilm_separates_paraphrase_from_unrelated():
    s = cosine(*PAIRS)
    assert s[0] > 0.85 and s[1] < 0.3


def test_bf16_cosines_are_fp32_s_within_bfloat16_rounding_and_cached_apart(tmp_path):
    fp32 = cosine(*PAIRS, SentenceEmbeddings(tmp_path / "minilm.sqlite"))
    bf16_cache = SentenceEmbeddings(tmp_path / "minilm.sqlite", precision="bf16")
    bf16 = cosine(*PAIRS, bf16_cache)
    assert bf16_cache.counts == {"encoded": 7, "from_cache": 0}  # 7 distinct texts; fp32's are not bf16's
    # bfloat16 keeps 8 bits of mantissa: a cosine moves by thousandths, never by a hundredth
    assert abs(bf16 - fp32).max() < 0.01 and not (bf16 == fp32).all()
    again = SentenceEmbeddings(tmp_path / "minilm.sqlite", precision="bf16")
    assert (cosine(*PAIRS, again) == bf16).all() and again.counts == {"encoded": 0, "from_cache": 7}


def test_positives_table(world, tmp_path):
    p, manifest = world
    neg_cfg = p.negatives.model_copy(update={"out_dir": tmp_path / "neg", "scenes": None})
    build_negatives(manifest, neg_cfg, p.seed)
    cfg = p.positives.model_copy(update={"out_dir": tmp_path / "pos", "chunk_size": 300})
    summary = build_positives(manifest, tmp_path / "neg/negatives.parquet", cfg, p.seed)
    pos = pd.read_parquet(tmp_path / "pos/positives.parquet")
    neg = pd.read_parquet(tmp_path / "neg/negatives.parquet")
    assert len(pos) > 0 and (pos["similarity"] >= cfg.min_similarity).all()
    assert (pos["positive"].str.lower() != pos["caption"].str.lower()).all()
    merged = pos.merge(neg[neg.valid == 1], on=["sample_id"])
    assert not (merged["positive"].str.lower() == merged["negative"].str.lower()).any()
    assert set(pos["rule"]) <= set(cfg.rules)
    rejected = [json.loads(l) for l in (tmp_path / "pos/positives_rejected.jsonl").read_text().splitlines()]
    by_rule = summary["by_rule"]
    assert sum(c["candidates"] for c in by_rule.values()) == \
        sum(c.get("kept", 0) for c in by_rule.values()) + len(rejected)  # every candidate accounted for
    assert summary["coverage"] > 0.3
    # a rerun reads every MiniLM embedding back from the content cache and writes the same table
    assert summary["execution"]["minilm_texts"]["encoded"] > 0
    first = (tmp_path / "pos/positives.parquet").read_bytes()
    again = build_positives(manifest, tmp_path / "neg/negatives.parquet", cfg, p.seed)
    assert again["execution"]["minilm_texts"] == {"encoded": 0, "from_cache": summary["execution"]["minilm_texts"]["encoded"]
                                                  + summary["execution"]["minilm_texts"].get("from_cache", 0)}
    assert (tmp_path / "pos/positives.parquet").read_bytes() == first
    assert json.loads((tmp_path / "pos/summary.json").read_text()) == {k: v for k, v in summary.items() if k != "execution"}


def test_rewriter_failures_are_counted_and_kept(world, tmp_path, monkeypatch):
    """An LLM that fails or answers nothing leaves a counted, reasoned row per caption, never a silent gap."""
    import compclip.text.positives_table as table
    from compclip.text.rewriters import Rewrite

    class Flaky:
        name = "llm_openai"

        def rewrite(self, captions, task):
            return [Rewrite(None, "llm_request_failed", "URLError: refused") if i % 2 else Rewrite(None, "llm_empty_answer")
                    for i, _ in enumerate(captions)]

    monkeypatch.setattr(table, "_rewriter", lambda cfg: Flaky())
    p, manifest = world
    cfg = p.positives.model_copy(update={"out_dir": tmp_path / "pos", "caption_fraction": 0.1})
    summary = build_positives(manifest, None, cfg, p.seed)
    replace = summary["by_rule"]["llm_openai_replace"]
    assert replace["requests"] == replace["llm_request_failed"] + replace["llm_empty_answer"] > 0
    rejected = [json.loads(l) for l in (tmp_path / "pos/positives_rejected.jsonl").read_text().splitlines()]
    failed = [r for r in rejected if r["rule"] == "llm_openai_replace"]
    assert len(failed) == replace["requests"] and {r["reason"] for r in failed} == {"llm_request_failed", "llm_empty_answer"}
