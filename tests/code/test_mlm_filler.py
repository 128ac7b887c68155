"""The fill-mask filler on a tiny random RoBERTa that the test builds and saves (no download)."""

import pytest

from compclip.text.fillers import FillRequest, MaskedLMFiller

CORPUS = ["a red cube to the left of a blue sphere", "a dog chasing a cat", "a small green tree",
          "two people riding horses on a beach", "a man eating a sandwich"] * 20


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from tests.tiny_mlm import build_tiny_mlm

    return build_tiny_mlm(tmp_path_factory.mktemp("tiny-roberta"), CORPUS)


def test_mlm_filler_returns_words_never_the_original(tiny_mlm):
    f = MaskedLMFiller(tiny_mlm, top_k=50, rank=3)
    reqs = [FillRequest("a <mask> cube to the left of a blue sphere", "red", "red", "ADJ"),
            FillRequest("a dog chasing a <mask>", "cat", "cat", "NOUN")]
    out = f.fill(reqs)
    assert len(out) == 2
    for word, req in zip(out, reqs):
        assert word is None or (word.isalpha() and word.lower() not in {req.original, req.lemma})
    assert any(w is not None for w in out)
    assert f.fill(reqs[:1]) == out[:1]  # a single request is unwrapped correctly, same answer


def test_missing_model_is_explained(tmp_path):
    with pytest.raises(ValueError, match="could not be loaded.*save_pretrained"):
        MaskedLMFiller(str(tmp_path / "no-such-model"))
