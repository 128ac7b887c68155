"""The shapes world: scenes, structured descriptions of them, and truth checking.

A scene is a few objects (shape, colour, size, pattern) on a grid. A *description* is what a caption
says: a list of object mentions (each naming a subset of attributes) and relations between them.
Captions are rendered from descriptions, so every generated negative can be checked against the
scene graph exactly: a description is true iff its mentions can be bound to distinct objects that
satisfy every attribute and relation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from compclip import names
from compclip.errors import UserError

# Relation name -> (caption phrase, converse relation name).
RELATIONS: dict[str, tuple[str, str]] = {
    "left_of": ("to the left of", "right_of"),
    "right_of": ("to the right of", "left_of"),
    "above": ("above", "below"),
    "below": ("below", "above"),
    "bigger_than": ("bigger than", "smaller_than"),
    "smaller_than": ("smaller than", "bigger_than"),
}
assert tuple(RELATIONS) == names.RELATIONS, "names.RELATIONS and the rendered relations disagree"
SPATIAL = ("left_of", "right_of", "above", "below")
ATTRIBUTES = ("size", "pattern", "color")  # adjective order in captions: "small striped red cube"


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    pattern: str
    row: int
    col: int

    def attr(self, name: str) -> str:
        return getattr(self, name)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]

    def holds(self, rel: str, a: SceneObject, b: SceneObject) -> bool:
        if rel == "left_of":
            return a.col < b.col
        if rel == "right_of":
            return a.col > b.col
        if rel == "above":
            return a.row < b.row
        if rel == "below":
            return a.row > b.row
        if rel == "bigger_than":
            return a.size == "large" and b.size == "small"
        if rel == "smaller_than":
            return a.size == "small" and b.size == "large"
        raise UserError(f"unknown relation {rel!r}")

    def true_relations(self) -> list[tuple[int, str, int]]:
        return [
            (i, rel, j)
            for (i, a), (j, b) in itertools.permutations(enumerate(self.objects), 2)
            for rel in RELATIONS
            if self.holds(rel, a, b)
        ]


@dataclass(frozen=True)
class Mention:
    """An object as a caption names it: the shape plus any subset of its attributes."""

    shape: str
    attrs: tuple[tuple[str, str], ...] = ()  # ((name, value), ...) in ATTRIBUTES order

    def get(self, name: str) -> str | None:
        return dict(self.attrs).get(name)

    def with_attr(self, name: str, value: str | None) -> Mention:
        values = dict(self.attrs)
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
        return replace(self, attrs=tuple((a, values[a]) for a in ATTRIBUTES if a in values))

    def matches(self, obj: SceneObject) -> bool:
        return obj.shape == self.shape and all(obj.attr(k) == v for k, v in self.attrs)

    def text(self) -> str:
        words = [v for _, v in self.attrs] + [self.shape]
        article = "an" if words[0][0] in "aeiou" else "a"
        return f"{article} {' '.join(words)}"


@dataclass(frozen=True)
class Description:
    mentions: tuple[Mention, ...]
    relations: tuple[tuple[int, str, int], ...] = field(default=())  # (mention i, rel, mention j)
    template: str = "and"

    def is_true_in(self, scene: Scene) -> bool:
        objs = scene.objects
        for binding in itertools.permutations(range(len(objs)), len(self.mentions)):
            if all(m.matches(objs[o]) for m, o in zip(self.mentions, binding)) and all(
                scene.holds(rel, objs[binding[i]], objs[binding[j]]) for i, rel, j in self.relations
            ):
                return True
        return False


def render_caption(d: Description) -> str:
    """Turn a description into English. Templates never change which words are said, only order."""
    m = [x.text() for x in d.mentions]
    if d.relations:
        i, rel, j = d.relations[0]
        phrase = RELATIONS[rel][0]
        rest = [m[k] for k in range(len(m)) if k not in (i, j)]
        tail = "".join(f" and {r}" for r in rest)
        if d.template == "there_is":
            return f"there is {m[i]} {phrase} {m[j]}{tail}"
        if d.template == "is":
            return f"{m[i]} is {phrase} {m[j]}{tail}"
        return f"{m[i]} {phrase} {m[j]}{tail}"
    if len(m) == 1:
        return f"a picture of {m[0]}" if d.template == "picture" else m[0]
    joined = ", ".join(m[:-1]) + f" and {m[-1]}" if len(m) > 2 else f"{m[0]} and {m[1]}"
    return f"there is {joined}" if d.template == "there_is" else joined


@dataclass(frozen=True)
class Vocabulary:
    shapes: tuple[str, ...]
    colors: tuple[str, ...]
    sizes: tuple[str, ...]
    patterns: tuple[str, ...]

    def values(self, attr: str) -> tuple[str, ...]:
        return {"size": self.sizes, "pattern": self.patterns, "color": self.colors, "shape": self.shapes}[attr]


@dataclass(frozen=True)
class Holdout:
    """Combinations seen only at test time: (colour, shape) pairs and (shape, relation, shape) triples."""

    attribute_object: frozenset[tuple[str, str]]
    relation: frozenset[tuple[str, str, str]]

    def object_held_out(self, o: SceneObject) -> bool:
        return (o.color, o.shape) in self.attribute_object

    def scene_held_out(self, scene: Scene) -> bool:
        if any(self.object_held_out(o) for o in scene.objects):
            return True
        objs = scene.objects
        return any((objs[i].shape, rel, objs[j].shape) in self.relation for i, rel, j in scene.true_relations())


class SceneSampler:
    """Draws scenes and descriptions from one numpy Generator, so a seed fixes everything."""

    def __init__(self, vocab: Vocabulary, grid: int, count_weights: list[float], rng: np.random.Generator):
        self.vocab, self.grid, self.rng = vocab, grid, rng
        self.count_weights = np.asarray(count_weights, dtype=float) / sum(count_weights)

    def _choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def _object(self, row: int, col: int) -> SceneObject:
        v = self.vocab
        return SceneObject(self._choice(v.shapes), self._choice(v.colors), self._choice(v.sizes),
                           self._choice(v.patterns), row, col)

    def scene(self) -> Scene:
        n = int(self.rng.choice(len(self.count_weights), p=self.count_weights)) + 1
        cells = self.rng.permutation(self.grid * self.grid)[:n]
        return Scene(tuple(self._object(int(c) // self.grid, int(c) % self.grid) for c in cells))

    def scene_where(self, want_held_out: bool, holdout: Holdout, max_tries: int = 1000) -> Scene:
        for _ in range(max_tries):
            s = self.scene()
            if holdout.scene_held_out(s) == want_held_out:
                return s
        raise RuntimeError(
            f"no scene with held_out={want_held_out} in {max_tries} draws: the holdout lists in "
            "params.yaml synth.holdout are too large or too small for the vocabulary"
        )

    def mention(self, obj: SceneObject, keep_prob: dict[str, float]) -> Mention:
        attrs = tuple((a, obj.attr(a)) for a in ATTRIBUTES if self.rng.random() < keep_prob[a])
        return Mention(obj.shape, attrs)

    def describe(self, scene: Scene, keep_prob: dict[str, float]) -> Description:
        """A true description of the scene: every object, plus one true relation when there are two+."""
        order = [int(i) for i in self.rng.permutation(len(scene.objects))]
        objs = [scene.objects[i] for i in order]
        mentions = tuple(self.mention(o, keep_prob) for o in objs)
        if len(objs) >= 2 and self.rng.random() < 0.75:
            rels = [r for r in RELATIONS if scene.holds(r, objs[0], objs[1])]
            rel = self._choice(rels)
            template = self._choice(("plain", "there_is", "is"))
            d = Description(mentions, ((0, rel, 1),), template)
        else:
            d = Description(mentions, (), self._choice(("plain", "there_is", "picture")))
        # A mention that drops attributes can still bind to the wrong object; truth is checked anyway.
        assert d.is_true_in(scene), d
        return d


def parse_caption(text: str, vocab: Vocabulary) -> Description | None:
    """Read a caption of the shapes-world grammar back into a description (None if it is not one).

    Used to check any caption, generated by any rule, against a scene graph.
    """
    attr_of = {v: a for a in ATTRIBUTES for v in vocab.values(a)}
    phrases = {tuple(p.split()): r for r, (p, _) in RELATIONS.items()}
    words = text.lower().replace(",", " ,").split()
    for prefix in (["there", "is"], ["a", "picture", "of"]):
        if words[:len(prefix)] == prefix and len(words) > len(prefix) and words[len(prefix)] in ("a", "an"):
            words = words[len(prefix):]
            break
    mentions: list[Mention] = []
    relations: list[tuple[int, str, int]] = []
    pending_rel, k = None, 0
    while k < len(words):
        if words[k] not in ("a", "an"):
            return None
        k += 1
        attrs = {}
        while k < len(words) and words[k] in attr_of and attr_of[words[k]] not in attrs:
            attrs[attr_of[words[k]]] = words[k]
            k += 1
        if k == len(words) or words[k] not in vocab.shapes:
            return None
        mentions.append(Mention(words[k], tuple((a, attrs[a]) for a in ATTRIBUTES if a in attrs)))
        k += 1
        if pending_rel:
            relations.append((len(mentions) - 2, pending_rel, len(mentions) - 1))
            pending_rel = None
        if k == len(words):
            break
        if words[k] in (",", "and"):
            k += 1
            continue
        if words[k] == "is":
            k += 1
        match = next((p for p in phrases if tuple(words[k:k + len(p)]) == p), None)
        if match is None:
            return None
        pending_rel = phrases[match]
        k += len(match)
    if pending_rel or not mentions:
        return None
    return Description(tuple(mentions), tuple(relations))
