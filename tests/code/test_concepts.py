"""Concept chains by rule, small-group merging, the DAG."""

import pandas as pd
import pytest

from compclip.text.concepts import RuleInferrer
from compclip.text.concepts_table import dag, merge_small


@pytest.fixture(scope="module")
def inferrer():
    return RuleInferrer()


@pytest.mark.parametrize("caption,chain", [
    ("a small striped red star to the left of a circle", ("small striped red star", "red star", "star", "shape")),
    ("a picture of a large hollow cyan arrow", ("large hollow cyan arrow", "cyan arrow", "arrow", "shape")),
    ("A young boy swinging a baseball bat at a ball.", ("young boy", "young boy", "person", "person")),
    ("A teddy bear sitting on a bed.", ("teddy bear", "teddy bear", "teddy bear", "indoor")),
    ("A large jetliner sitting on a runway.", ("large jetliner", "large jetliner", "airplane", "vehicle")),
    ("Two dogs playing with a frisbee in the grass.", ("dog", "dog", "dog", "animal")),
    ("!!!", None),
])
def test_rule_chains(inferrer, caption, chain):
    assert inferrer.infer([caption]) == [chain]


def test_merge_small_into_smallest_sibling():
    rows = ([("big red star", "red star")] * 6 + [("small red star", "red star")] * 3 +
            [("striped red star", "red star")] * 2 + [("blue circle", "blue circle")] * 2)
    m = pd.DataFrame(rows, columns=["level1", "level2"])
    merged, merges = merge_small(m, min_size=5)
    # striped (2) -> small (3) makes small 5; blue circle is an only child and its own parent: left undersized
    assert merges == [{"concept": "striped red star", "into": "small red star", "images": 2}]
    assert merged.groupby("level1").size().to_dict() == {"big red star": 6, "small red star": 5, "blue circle": 2}


def test_dag_edges_go_up_one_level():
    m = pd.DataFrame([("small red star", "red star", "star", "shape"), ("red circle", "red circle", "circle", "shape")],
                     columns=["level1", "level2", "level3", "level4"])
    g = dag(m)
    assert set(g.successors(("level1", "small red star"))) == {("level2", "red star")}
    assert set(g.predecessors(("level4", "shape"))) == {("level3", "star"), ("level3", "circle")}


def test_concept_hard_negatives_are_siblings_not_refinements():
    from compclip.text.concepts_table import hard_negative_pairs

    names = ["purple star", "striped purple star", "small striped purple star", "purple heart", "green star"]
    pairs = {(a, b) for a, b, _ in hard_negative_pairs(names, threshold=0.0, per_concept=10)}
    assert ("purple star", "purple heart") in pairs and ("purple star", "green star") in pairs
    for a, b in pairs:  # one concept's words never contain the other's: that would be true of the same image
        assert not (set(a.split()) <= set(b.split()) or set(b.split()) <= set(a.split())), (a, b)
