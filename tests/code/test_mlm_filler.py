"""The fill-mask filler on a tiny random RoBERTa that the test builds and saves (no download)."""

import pytest

from compclip.text.fillers import FillRequest, MaskedLMFiller

CORPUS = ["a red cube to the left of a blue sphere", "a dog chasing a cat", "a small green tree",
          "two people riding horses on a beach", "a man eating a sandwich"] * 20


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    d = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(d))
    tok = RobertaTokenizerFast.from_pretrained(str(d))  # vocab.json + merges.txt (not vocab_file=: ignored in 5.x)
    assert tok.vocab_size > 50
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    RobertaForMaskedLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


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
