"""Texts over the model's context: counted exactly, skipped on request, ties made by the cut reported."""

import open_clip
import pandas as pd
import pytest
import torch

from compclip.evaluation.evaluate import context_counts
from compclip.evaluation.sugarcrepe import Item
from compclip.text.context import over_context, same_after_cut
from compclip.training.data import fit_to_context


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.get_tokenizer("ViT-B-32")  # the BPE vocabulary ships with open_clip: no download


def words(n: int) -> str:
    return " ".join(["word"] * n)  # one BPE token per "word"


def test_over_context_is_exact_at_the_boundary(tokenizer):
    assert tokenizer.context_length == 77
    # 75 tokens + start + end fill the context exactly; 76 are cut
    assert over_context(tokenizer, [words(75), words(76), "a dog", "é" * 200]).tolist() == [False, True, False, True]


def test_a_cut_that_removes_the_difference_is_a_tie(tokenizer):
    a, b = [words(80) + " red", "a red cube"], [words(80) + " blue", "a blue cube"]
    assert same_after_cut(tokenizer, a, b).tolist() == [True, False]
    items = [Item(str(i), "x.png", c, n) for i, (c, n) in enumerate(zip(a + [words(90)], b + ["short"]))]
    assert context_counts(tokenizer, items) == {"items": 2, "tied_by_cut": 1}


def test_fit_to_context_counts_and_skips(tokenizer):
    rows = pd.DataFrame({"sample_id": ["a", "b", "c"], "caption": ["a red cube", words(80), "a blue ball"]})
    negatives = ([["a blue cube", words(90)], ["x", "y"], [words(100), "###"]],
                 torch.tensor([[True, True], [True, False], [False, False]]))
    positives = (["a cube that is red", words(99), "###"], torch.tensor([True, True, False]))
    kept, neg, pos, report = fit_to_context(tokenizer, rows, negatives, positives, "truncate")
    # over: caption b; negative (a, 1) (valid) and (c, 0) (invalid: not counted); positive b
    assert report == {"context_length": 77, "policy": "truncate", "captions_over": 1, "negatives_over": 1,
                      "positives_over": 1, "rows_skipped": 0}
    assert kept is rows and neg is negatives and pos is positives
    kept, neg, pos, report = fit_to_context(tokenizer, rows, negatives, positives, "skip")
    assert report["rows_skipped"] == 1 and list(kept["sample_id"]) == ["a", "c"]
    assert neg[0] == [negatives[0][0], negatives[0][2]]
    assert neg[1].tolist() == [[True, False], [False, False]]  # a's long negative masked out
    assert pos[0] == ["a cube that is red", "###"] and pos[1].tolist() == [True, False]


def test_tokenize_matches_the_tokenizer_and_reads_the_disk_cache_after(tokenizer, tmp_path, monkeypatch):
    from compclip.text import tokens as tokens_module
    from compclip.text.tokens import tokenize

    texts = ["a red cube", words(75), words(76), "a red cube", "é" * 200, "###", words(90) + " red"]
    calls = []
    monkeypatch.setattr(tokens_module, "_MEMORY", {})  # as in a fresh process
    ids, over = tokenize(tokenizer, texts, cache=tmp_path)
    assert torch.equal(ids, tokenizer(texts))
    assert over.tolist() == over_context(tokenizer, texts).tolist() == [False, False, True, False, True, False, True]
    # a second process (nothing in memory) reads every id from disk and tokenizes nothing
    monkeypatch.setattr(tokens_module, "_MEMORY", {})
    monkeypatch.setattr(tokens_module, "_tokenize_fresh", lambda *a: calls.append(a) or pytest.fail("tokenized again"))
    again, over_again = tokenize(tokenizer, texts[::-1], cache=tmp_path)
    assert torch.equal(again, ids.flip(0)) and over_again.tolist() == over.tolist()[::-1]
    assert not calls
    # another tokenizer (another context) never reads these ids
    other = open_clip.get_tokenizer("ViT-B-32", context_length=16)
    assert tokens_module.tokenizer_id(other) != tokens_module.tokenizer_id(tokenizer)
