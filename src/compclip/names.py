"""The names params.yaml may use: negative and positive rules, loss terms, shapes-world relations.

One registry at the bottom of the import graph, so config.py validates names without importing the
modules that implement them; each implementing module checks at import that it implements exactly these.
"""

PLACEHOLDER = "###"  # a negative or positive a rule could not make (valid = 0)

# Negative rule -> the negative type it makes. Order matters: the first four are CE-CLIP's positions 0..3.
NEGATIVE_RULES: dict[str, str] = {
    "swap_nouns": "relation",
    "replace_adj": "attribute",
    "replace_noun": "object",
    "replace_verb": "action",
    "sc_replace_obj": "replace_obj",
    "sc_replace_att": "replace_att",
    "sc_replace_rel": "replace_rel",
    "sc_swap_obj": "swap_obj",
    "sc_swap_att": "swap_att",
    "sc_add_obj": "add_obj",
    "sc_add_att": "add_att",
    "shuffle_nouns_and_adj": "shuffle_nouns_and_adj",
    "shuffle_allbut_nouns_and_adj": "shuffle_allbut_nouns_and_adj",
    "shuffle_within_trigrams": "shuffle_within_trigrams",
    "shuffle_trigrams": "shuffle_trigrams",
}
CE_CLIP_RULES = ("swap_nouns", "replace_adj", "replace_noun", "replace_verb")
# Made from a scene graph instead of the caption's words (shapes world only): rule -> negative type.
SCENE_GRAPH_RULES = {"scene_graph_relation": "relation", "scene_graph_attribute": "attribute"}

POSITIVE_RULES = ("converse_relation", "swap_and", "passive", "active", "synonym")

LOSS_TERMS = ("clip", "negclip", "ce_clip", "hard_positive", "clear_glass")

# Shapes-world relations (data/world.py renders them).
RELATIONS = ("left_of", "right_of", "above", "below", "bigger_than", "smaller_than")


def check_known(kind: str, names, known) -> list[str]:
    """names, if every one is in known; else a ValueError that lists the known ones."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; known: {list(known)}")
    return list(names)

# `compclip evaluate` benchmarks (evaluation/suite.py implements exactly these)
BENCHMARKS = ("sugarcrepe", "aro-relation", "aro-attribution", "coco-order", "flickr-order", "valse", "vl-checklist",
              "crepe", "hard-positives", "abstraction", "retrieval", "zeroshot")
