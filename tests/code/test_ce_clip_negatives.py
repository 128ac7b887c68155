"""CE-CLIP negative rules on hand-written captions with exact expected outputs."""

import pytest

from compclip.text.fillers import FillRequest, LexiconFiller
from compclip.text.negatives import PLACEHOLDER, ce_clip_negatives, swap_nouns
from compclip.text.nlp import load_spacy, tokens


@pytest.fixture(scope="module")
def nlp():
    return load_spacy()


class FixedFiller:
    """Returns a fixed word per POS, so rules can be checked exactly."""

    name = "fixed"

    def __init__(self, words):
        self.words, self.seen = words, []

    def fill(self, requests):
        self.seen += requests
        return [self.words.get(r.pos) for r in requests]


def negs(nlp, caption, filler):
    return {n.neg_type: n for n in ce_clip_negatives([("s1", caption)], nlp, filler, seed=0)}


def test_all_four_types(nlp):
    f = FixedFiller({"ADJ": "green", "NOUN": "horse", "VERB": "eating"})
    out = negs(nlp, "A brown dog chasing a small cat", f)
    assert list(out) == ["relation", "attribute", "object", "action"]
    assert out["relation"].negative == "A brown cat chasing a small dog"
    assert out["action"].negative == "A brown dog eating a small cat"
    assert out["attribute"].negative in {"A green dog chasing a small cat", "A brown dog chasing a green cat"}
    assert out["object"].negative in {"A brown horse chasing a small cat", "A brown dog chasing a small horse"}
    assert all(n.valid == 1 and n.sample_id == "s1" for n in out.values())
    assert out["relation"].rule == "swap_nouns" and out["action"].rule == "replace_verb"


def test_missing_types_are_placeholders(nlp):
    f = FixedFiller({"ADJ": "green", "NOUN": "horse", "VERB": "eating"})
    out = negs(nlp, "a cat", f)
    assert out["relation"].negative == PLACEHOLDER and out["relation"].valid == 0
    assert out["attribute"].negative == PLACEHOLDER and out["attribute"].valid == 0
    assert out["action"].negative == PLACEHOLDER and out["action"].valid == 0
    assert out["object"].negative == "a horse" and out["object"].valid == 1


def test_spatial_words_are_not_objects(nlp):
    toks = tokens(nlp("a red square to the left of a blue circle"))
    assert swap_nouns(toks) == "a red circle to the left of a blue square"
    f = FixedFiller({"NOUN": "star"})
    negs(nlp, "a square to the left of a circle", f)
    assert f.seen and all(r.original != "left" for r in f.seen)


def test_same_noun_twice_is_not_a_swap(nlp):
    assert swap_nouns(tokens(nlp("a dog next to a dog"))) is None


def test_filler_without_answer_gives_placeholder(nlp):
    out = negs(nlp, "a brown dog", FixedFiller({}))
    assert out["attribute"].negative == PLACEHOLDER and out["attribute"].valid == 0


def lexicon(nlp, *captions, seed=0):
    return LexiconFiller.from_tokens((tokens(d) for d in nlp.pipe(captions)), seed)


def test_deterministic_whatever_the_batch(nlp):
    lex = lexicon(nlp, "a tall tree near a red house", "a small cat eats a blue fish", "a dog runs", seed=1)
    alone = list(ce_clip_negatives([("a", "a tall tree near a red house")], nlp, lex, 1))
    mixed = list(ce_clip_negatives([("b", "a cat"), ("a", "a tall tree near a red house")], nlp, lex, 1))
    assert alone == [n for n in mixed if n.sample_id == "a"]


def test_lexicon_filler_never_returns_original_or_lemma(nlp):
    lex = lexicon(nlp, "two dogs and a dog", "the cats", "many birds")
    for masked in ("a <mask> barking", "two <mask> here", "x <mask>"):
        req = FillRequest(masked, "dogs", "dog", "NOUN", tag="NNS")
        assert lex.fill([req])[0] in {"cats", "birds"}
    only_dogs = lexicon(nlp, "two dogs and a dog")
    assert only_dogs.fill([FillRequest("two <mask>", "dogs", "dog", "NOUN", tag="NNS")]) == [None]


# --- SugarCrepe-style and ARO rules ----------------------------------------------------------------

from compclip.text.negatives import RULES, generate  # noqa: E402


def one(nlp, rule, caption, filler=None):
    f = filler or FixedFiller({"ADJ": "green", "NOUN": "horse", "VERB": "eating"})
    [n] = list(generate([("s", caption)], nlp, f, seed=0, rules=[rule]))
    return n


def test_swap_attributes(nlp):
    assert one(nlp, "sc_swap_att", "a red cube and a blue ball").negative == "a blue cube and a red ball"
    assert one(nlp, "sc_swap_att", "a red cube and a red ball").valid == 0
    # only attributes of one kind change places: never a colour into a size word's phrase ("a large large star")
    assert one(nlp, "sc_swap_att", "a large red cube below a large blue star").negative == \
        "a large blue cube below a large red star"
    assert one(nlp, "sc_swap_att", "a striped red cube and a small blue ball").negative == \
        "a striped blue cube and a small red ball"
    assert one(nlp, "sc_swap_att", "a striped cube and a small ball").valid == 0


def test_replace_relation_uses_contrary_words(nlp):
    assert one(nlp, "sc_replace_rel", "a cat on a table").negative == "a cat under a table"
    assert one(nlp, "sc_replace_rel", "a red square to the left of a blue circle").negative == \
        "a red square to the right of a blue circle"
    # no spatial word: the verb is replaced by the filler
    assert one(nlp, "sc_replace_rel", "a man riding a horse").negative == "a man eating a horse"


def test_add_object_and_attribute(nlp):
    assert one(nlp, "sc_add_obj", "A dog on the grass.").negative == "A dog on the grass and a horse"
    assert one(nlp, "sc_add_att", "a dog").negative == "a green dog"
    f = FixedFiller({"ADJ": "large"})
    assert one(nlp, "sc_add_att", "a brown dog", f).negative == "a large brown dog"  # a size: the colour is there
    assert f.seen[-1].kind == "size" and f.seen[-1].tag == "JJ"
    f = FixedFiller({"ADJ": "red"})
    assert one(nlp, "sc_add_att", "a small cube", f).negative == "a small red cube"  # a colour, after the size
    assert f.seen[-1].kind == "colour"


def test_aro_shuffles_are_permutations(nlp):
    cap = "a small dog chasing a big cat across the green park"
    for rule in ("shuffle_nouns_and_adj", "shuffle_allbut_nouns_and_adj", "shuffle_within_trigrams",
                 "shuffle_trigrams"):
        n = one(nlp, rule, cap)
        assert sorted(n.negative.split()) == sorted(cap.split()) and n.negative != cap and n.valid == 1
    kept = one(nlp, "shuffle_nouns_and_adj", cap).negative.split()
    assert [w for w in kept if w in ("chasing", "across", "the")] == ["chasing", "across", "the"]


def test_every_rule_handles_bad_text(nlp):
    bad = ["", "   ", "!!! ...", "日本語のキャプション", "word " * 300]
    rows = list(generate([(str(i), c) for i, c in enumerate(bad)], nlp,
                         lexicon(nlp, "a red cat runs", "the cat"), 0, RULES))
    assert len(rows) == len(bad) * len(RULES)
    assert all(r.valid == 0 for r in rows if r.sample_id in ("0", "1", "2"))
    assert all(r.negative != r.caption for r in rows)


def test_word_table_keeps_each_word_under_its_usual_tag():
    from compclip.text.fillers import WordTable
    from compclip.text.nlp import Token

    toks = [[Token("cross", "NOUN", "cross", " ", "NN"), Token("red", "ADJ", "red", "", "JJ")]] * 3 + \
           [[Token("cross", "VERB", "cross", " ", "VB"), Token("left", "NOUN", "left", "", "NN")]]
    table = WordTable.from_tokens(toks, exclude=frozenset({"left"}))
    assert table.tag == {"cross": "NN", "red": "JJ"}


def test_list_items_are_swapped_only_when_it_changes_the_meaning_and_articles_agree(nlp):
    toks = tokens(nlp("a man and a woman sitting on a bench"))
    assert swap_nouns(toks) == "a bench and a woman sitting on a man"  # not the meaning-preserving man<->woman
    # the items of one list are never exchanged with each other (broccoli <-> rice keeps the meaning)
    assert swap_nouns(tokens(nlp("A plate with broccoli, rice and chicken."))) == \
        "Broccoli with a plate, rice and chicken."
    # unless their modifiers differ: exchanging the heads alone moves the attributes, and the caption is false
    assert swap_nouns(tokens(nlp("a red car and a blue truck"))) == "a red truck and a blue car"
    assert swap_nouns(tokens(nlp("a small solid cyan circle and a solid white triangle"))) == \
        "a small solid cyan triangle and a solid white circle"
    assert swap_nouns(tokens(nlp("a red car and a red truck"))) is None  # the same modifiers: the same meaning
    out = negs(nlp, "a truck", FixedFiller({"NOUN": "apple"}))
    assert out["object"].negative == "an apple"
