"""The fill-mask filler on a tiny random RoBERTa that the test builds and saves (no download): its
predictions pass the same checks as the lexicon's (fine tag, lemma, kind, near-synonyms, the caption's words)."""

import pytest

from compclip.text.fillers import FillRequest, MaskedLMFiller, WordTable
from compclip.text.nlp import load_spacy, tokens

CORPUS = ["a red cube to the left of a blue sphere", "a dog chasing a cat", "a small green tree",
          "two people riding horses on a beach", "a man eating a sandwich", "a bird sitting on a fence",
          "a yellow bus and a white truck"] * 20


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from tests.tiny_mlm import build_tiny_mlm

    return build_tiny_mlm(tmp_path_factory.mktemp("tiny-roberta"), CORPUS, vocab_size=1000)  # whole words


@pytest.fixture(scope="module")
def table():
    return WordTable.from_tokens(tokens(d) for d in load_spacy().pipe(sorted(set(CORPUS))))


def test_mlm_filler_answers_pass_the_checks(tiny_mlm, table):
    f = MaskedLMFiller(tiny_mlm, table, top_k=360, rank=0)  # nearly the whole tiny vocabulary (369): every word is judged
    reqs = [FillRequest("a <mask> cube to the left of a blue sphere", "red", "red", "ADJ", tag="JJ", kind="colour",
                        group=0, avoid=frozenset({"cube", "blue", "sphere", "red"})),
            FillRequest("a dog chasing a <mask>", "cat", "cat", "NOUN", tag="NN", avoid=frozenset({"dog", "chase"}))]
    out = f.fill(reqs)
    assert len(out) == 2 and all(w is not None for w in out)
    assert out[0] in {"green", "yellow", "white"}  # a colour of the corpus, not blue (in the caption), not red
    assert table.tag[out[1]] == "NN" and out[1] not in {"cat", "dog"}
    for word, req in zip(out, reqs):
        assert table.failed_check(word, req) is None
    assert f.fill(reqs[:1]) == out[:1]  # a single request is unwrapped correctly, same answer


def test_mlm_filler_has_nothing_when_no_prediction_passes(tiny_mlm, table):
    f = MaskedLMFiller(tiny_mlm, table, top_k=5, rank=0)
    req = FillRequest("a <mask> bus", "yellow", "yellow", "ADJ", tag="JJ", kind="material", group=0)
    assert f.fill([req]) == [None]  # no material in the corpus or among the predictions


def test_missing_model_is_explained(tmp_path):
    with pytest.raises(ValueError, match="could not be loaded.*save_pretrained"):
        MaskedLMFiller(str(tmp_path / "no-such-model"), WordTable())
