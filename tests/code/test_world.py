import numpy as np
import pytest

from compclip.data.perturb import SUGARCREPE_TYPES, add_att, swap_att, swap_obj
from compclip.data.world import Description, Mention, Scene, SceneObject, Vocabulary, render_caption

RED_SQ = SceneObject("square", "red", "small", "solid", row=0, col=0)
BLUE_CI = SceneObject("circle", "blue", "large", "striped", row=0, col=2)
SCENE = Scene((RED_SQ, BLUE_CI))
VOCAB = Vocabulary(("square", "circle", "star"), ("red", "blue", "orange"), ("small", "large"),
                   ("solid", "striped"))


def m(shape, **attrs):
    return Mention(shape).with_attr("color", attrs.get("color")).with_attr("size", attrs.get("size"))


def test_captions_exact():
    d = Description((m("square", color="red", size="small"), m("circle", color="blue")), ((0, "left_of", 1),))
    assert render_caption(d) == "a small red square to the left of a blue circle"
    assert render_caption(Description(d.mentions, d.relations, "is")) == \
        "a small red square is to the left of a blue circle"
    assert render_caption(Description((m("star", color="orange"),), (), "picture")) == "a picture of an orange star"
    three = Description((m("square"), m("circle"), m("star")), (), "there_is")
    assert render_caption(three) == "there is a square, a circle and a star"


def test_truth_against_scene():
    true = Description((m("square", color="red"), m("circle", color="blue")), ((0, "left_of", 1),))
    assert true.is_true_in(SCENE)
    assert not Description(true.mentions, ((0, "right_of", 1),)).is_true_in(SCENE)
    assert not Description(true.mentions, ((0, "bigger_than", 1),)).is_true_in(SCENE)
    assert Description(true.mentions, ((0, "smaller_than", 1),)).is_true_in(SCENE)
    # one object cannot satisfy two mentions
    assert not Description((m("square"), m("square"))).is_true_in(SCENE)


def test_swaps_are_exact_and_false():
    d = Description((m("square", color="red"), m("circle", color="blue")))
    rng = np.random.default_rng(0)
    assert render_caption(swap_att(d, VOCAB, rng)) == "a blue square and a red circle"
    assert render_caption(swap_obj(d, VOCAB, rng)) == "a red circle and a blue square"
    assert not swap_att(d, VOCAB, rng).is_true_in(SCENE)
    assert not swap_obj(d, VOCAB, rng).is_true_in(SCENE)
    # nothing to swap in a single mention
    assert swap_att(Description((m("square", color="red"),)), VOCAB, rng) is None


def test_add_att_only_adds_missing_attributes():
    d = Description((m("square", color="red", size="small"),))
    out = add_att(d, VOCAB, np.random.default_rng(1))
    assert out.mentions[0].get("pattern") in VOCAB.patterns
    assert out.mentions[0].get("color") == "red" and out.mentions[0].get("size") == "small"


@pytest.mark.parametrize("name", sorted(SUGARCREPE_TYPES))
def test_every_type_changes_the_caption(name):
    d = Description((m("square", color="red", size="small"), m("circle", color="blue")), ((0, "left_of", 1),))
    rng = np.random.default_rng(3)
    outs = [SUGARCREPE_TYPES[name](d, VOCAB, rng) for _ in range(20)]
    assert all(o is not None and render_caption(o) != render_caption(d) for o in outs)
