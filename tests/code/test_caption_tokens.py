"""Caption tokens kept on disk by content (text.nlp.caption_tokens): the negatives, positives and concepts
stages parse each training caption once between them, and read exactly what spaCy gives."""

from compclip.text import nlp as nlp_module
from compclip.text.nlp import cached_tokens, caption_tokens, load_spacy, store_tokens, tokens

TEXTS = ["a small red circle to the left of a blue square", "two striped hearts", "a small red circle to the left of a blue square"]


def test_tokens_are_spacy_s_and_a_second_call_parses_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPCLIP_CACHE", str(tmp_path))
    expected = [tokens(d) for d in load_spacy().pipe(TEXTS)]
    assert caption_tokens(TEXTS) == expected
    assert cached_tokens(TEXTS) == {TEXTS[0]: expected[0], TEXTS[1]: expected[1]}

    class NoParser:  # the real pipeline's meta (the cache file's name) with a pipe that must not run
        meta = load_spacy().meta

        def pipe(self, texts, batch_size=256):
            texts = list(texts)
            assert not texts, f"parsed again: {texts}"
            return iter(())

    monkeypatch.setattr(nlp_module, "load_spacy", lambda name=None: NoParser())
    again = caption_tokens(TEXTS)
    assert again == expected and all(type(t) is nlp_module.Token for toks in again for t in toks)


def test_stored_tokens_are_read_back_and_other_texts_parsed(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPCLIP_CACHE", str(tmp_path))
    first = [tokens(d) for d in load_spacy().pipe(TEXTS[:1])]
    store_tokens({TEXTS[0]: first[0]})
    assert list(cached_tokens(TEXTS)) == [TEXTS[0]]
    out = caption_tokens(TEXTS[:2])
    assert out[0] == first[0] and out[1] == tokens(load_spacy()(TEXTS[1]))
    assert set(cached_tokens(TEXTS)) == set(TEXTS)


def test_a_change_to_this_module_s_code_is_a_new_cache(tmp_path, monkeypatch):
    """What is kept is tokens()' output: edited code (another reading of a tag) must not read old tokens."""
    monkeypatch.setenv("COMPCLIP_CACHE", str(tmp_path / "cache"))
    caption_tokens(TEXTS)
    assert set(cached_tokens(TEXTS)) == set(TEXTS)
    edited = tmp_path / "nlp.py"
    edited.write_bytes(open(nlp_module.__file__, "rb").read() + b"\n# an edit\n")
    monkeypatch.setattr(nlp_module, "__file__", str(edited))
    assert cached_tokens(TEXTS) == {}
