"""Structured perturbations of shapes-world descriptions: SugarCrepe's seven negative types.

Each function returns a perturbed description or None when the description has nothing to perturb.
Callers check the result against the scene graph, so every kept negative is false by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compclip.data.world import ATTRIBUTES, RELATIONS, Description, Mention, Vocabulary

Perturbation = Callable[[Description, Vocabulary, np.random.Generator], "Description | None"]


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))] if len(seq) else None


def _with_mention(d: Description, k: int, m: Mention) -> Description:
    mentions = list(d.mentions)
    mentions[k] = m
    return Description(tuple(mentions), d.relations, d.template)


def replace_obj(d: Description, vocab: Vocabulary, rng: np.random.Generator) -> Description | None:
    k = int(rng.integers(len(d.mentions)))
    shape = _pick(rng, [s for s in vocab.shapes if s != d.mentions[k].shape])
    return _with_mention(d, k, Mention(shape, d.mentions[k].attrs))


def replace_att(d: Description, vocab: Vocabulary, rng: np.random.Generator) -> Description | None:
    slots = [(k, a) for k, m in enumerate(d.mentions) for a, _ in m.attrs]
    if not slots:
        return None
    k, attr = slots[int(rng.integers(len(slots)))]
    value = _pick(rng, [v for v in vocab.values(attr) if v != d.mentions[k].get(attr)])
    return _with_mention(d, k, d.mentions[k].with_attr(attr, value))


def replace_rel(d: Description, vocab: Vocabulary, rng: np.random.Generator) -> Description | None:
    if not d.relations:
        return None
    i, rel, j = d.relations[0]
    new = _pick(rng, [r for r in RELATIONS if r != rel])
    return Description(d.mentions, ((i, new, j),) + d.relations[1:], d.template)


def swap_att(d: Description, vocab: Vocabulary, rng: np.random.Generator) -> Description | None:
    """Exchange one attribute's values between two mentions ("red cube, blue ball" -> "blue cube, red ball")."""
    pairs = [
        (a, b, attr)
        for a in range(len(d.mentions))
        for b in range(a + 1, len(d.mentions))
        for attr in ATTRIBUTES
        if None not in (d.mentions[a].get(attr), d.mentions[b].get(attr))
        and d.mentions[a].get(attr) != d.mentions[b].get(attr)
    ]
    if not pairs:
        return None
    a, b, attr = pairs[int(rng.integers(len(pairs)))]
    va, vb = d.mentions[a].get(attr), d.mentions[b].get(attr)
    d = _with_mention(d, a, d.mentions[a].with_attr(attr, vb))
    return _with_mention(d, b, d.mentions[b].with_attr(attr, va))


def swap_obj(d: Description, vocab: Vocabulary, rng: np.random.Generator) -> Description | None:
    """Exchange the nouns of two mentions, leaving their attributes in place."""
    pairs = [(a, b) for a in range(len(d.mentions)) for b in range(a + 1, len(d.mentions))
             if d.mentions[a].shape != d.mentions[b].shape]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    ma, mb = d.mentions[a], d.mentions[b]
    d = _with_mention(d, a, Mention(mb.shape, ma.attrs))
    return _with_mention(d, b, Mention(ma.shape, mb.attrs))


def add_obj(d: Description, vocab: Vocabulary, rng: np.random.Generator) -> Description | None:
    m = Mention(_pick(rng, vocab.shapes), (("color", _pick(rng, vocab.colors)),))
    return Description(d.mentions + (m,), d.relations, d.template)


def add_att(d: Description, vocab: Vocabulary, rng: np.random.Generator) -> Description | None:
    slots = [(k, a) for k, m in enumerate(d.mentions) for a in ATTRIBUTES if m.get(a) is None]
    if not slots:
        return None
    k, attr = slots[int(rng.integers(len(slots)))]
    return _with_mention(d, k, d.mentions[k].with_attr(attr, _pick(rng, vocab.values(attr))))


SUGARCREPE_TYPES: dict[str, Perturbation] = {
    "replace_obj": replace_obj,
    "replace_att": replace_att,
    "replace_rel": replace_rel,
    "swap_obj": swap_obj,
    "swap_att": swap_att,
    "add_obj": add_obj,
    "add_att": add_att,
}


# --- exact negatives against a known scene (the shapes world's ground truth) ------------------------

def false_relation(d: Description, scene, rng: np.random.Generator) -> Description | None:
    """The description with a relation between two of its objects that the scene contradicts."""
    if len(d.mentions) < 2:
        return None
    i, j = (d.relations[0][0], d.relations[0][2]) if d.relations else (0, 1)
    for rel in rng.permutation(list(RELATIONS)):
        cand = Description(d.mentions, ((i, str(rel), j),) + d.relations[1:], d.template)
        if cand != d and not cand.is_true_in(scene):
            return cand
    return None


def false_attribute(d: Description, vocab: Vocabulary, scene, rng: np.random.Generator) -> Description | None:
    """One attribute of one mention changed (or added) so that the scene contradicts it."""
    slots = [(k, a) for k in range(len(d.mentions)) for a in ATTRIBUTES]
    for s in rng.permutation(len(slots)):
        k, attr = slots[int(s)]
        for value in rng.permutation(list(vocab.values(attr))):
            if value == d.mentions[k].get(attr):
                continue
            cand = _with_mention(d, k, d.mentions[k].with_attr(attr, str(value)))
            if not cand.is_true_in(scene):
                return cand
    return None
