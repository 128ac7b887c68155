"""Hard negatives from captions, rule by rule, on spaCy's POS and fine tags.

Every rule returns, for one caption, either a finished negative, None (the caption lacks what the rule
needs), or a Draft with one masked word for a filler. Drafts of a whole batch go to the filler at once.
Each caption gets one row per rule, so batches stay rectangular: a rule that does not apply gives the
placeholder '###' with valid=0 (CE-CLIP paper behaviour).

What a rule may change, and what a replacement must satisfy, is in grammar.py (heads of noun phrases,
adjectives that modify a noun, verbs with their use) and in the fillers' checks; every negative's
articles are made to agree ("an cubicle" never leaves this module).

Families (neg_type):
- CE-CLIP: relation (swap two nouns), attribute (ADJ), object (NOUN), action (VERB) — positions 0..3.
- SugarCrepe/CREPE: replace_obj/att/rel, swap_obj/att, add_obj/att.
- ARO order perturbations (a NegCLIP-style baseline): shuffle_nouns_and_adj, shuffle_allbut_nouns_and_adj,
  shuffle_within_trigrams, shuffle_trigrams.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from compclip.names import CE_CLIP_RULES, NEGATIVE_RULES, PLACEHOLDER
from compclip.text import grammar
from compclip.text.fillers import MASK, Filler, FillRequest
from compclip.text.nlp import Token, join, tokens
from compclip.errors import UserError

CE_CLIP_TYPES = ("relation", "attribute", "object", "action")  # position k = type k

# Relation words with a contrary meaning, for replace_rel without a model.
CONTRARY = {"left": "right", "right": "left", "above": "below", "below": "above", "on": "under",
            "under": "on", "over": "under", "inside": "outside", "outside": "inside", "in": "outside",
            "behind": "in front of", "front": "back", "top": "bottom", "bottom": "top", "bigger": "smaller",
            "smaller": "bigger", "larger": "smaller", "near": "far from", "with": "without",
            "toward": "away from", "into": "out of", "up": "down", "down": "up"}
# what a noun phrase is made of, left of its head: "three large wooden" + "boxes"
_NP_TAGS = frozenset({"DT", "PDT", "CD", "PRP$", "JJ", "JJR", "JJS", "NN", "NNS", "HYPH"})


@dataclass(frozen=True)
class Negative:
    sample_id: str
    caption: str
    negative: str
    neg_type: str
    rule: str
    filler: str
    valid: int


@dataclass(frozen=True)
class Draft:
    """A negative waiting for one word: tokens[index] is the MASK token."""

    toks: tuple[Token, ...]
    index: int
    request: FillRequest


class Sentence(list):
    """A caption's tokens with what several rules ask of them, worked out once per caption."""

    @cached_property
    def object_nouns(self) -> list[int]:
        return [i for i in range(len(self)) if grammar.is_object_noun(self, i)]

    @cached_property
    def head_nouns(self) -> list[int]:
        return [i for i in range(len(self)) if grammar.is_head_noun(self, i)]

    @cached_property
    def has_head(self) -> bool:
        return bool(self.head_nouns)

    @cached_property
    def attributes(self) -> list[tuple[int, int]]:
        """(adjective, the noun it modifies) for every attribute of a known kind."""
        kinds = grammar.attribute_kinds()
        out = []
        for i, t in enumerate(self):
            if t.text.lower() in kinds:
                noun = grammar.modified_noun(self, i)
                if noun is not None:
                    out.append((i, noun))
        return out

    @cached_property
    def verbs(self) -> list[int]:
        return [i for i in range(len(self)) if grammar.is_action_verb(self, i)]

    @cached_property
    def content_lemmas(self) -> frozenset[str]:
        return frozenset(t.lemma for t in self if t.pos in ("NOUN", "VERB", "ADJ", "PROPN"))


def sentence(toks: list[Token]) -> Sentence:
    return toks if isinstance(toks, Sentence) else Sentence(toks)


class Draw:
    """The rules' random choices for one caption and rule: seeded by both, so a caption gets the same negative
    whatever batch it is in. A choice is a hash, far cheaper than seeding a Mersenne Twister per row; the
    shuffles that need one get it lazily."""

    def __init__(self, key: str):
        self.key = key
        self.value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
        self._random: random.Random | None = None

    def randrange(self, n: int) -> int:
        return self.value % n

    def shuffle(self, items: list) -> None:
        if self._random is None:
            self._random = random.Random(self.key)
        self._random.shuffle(items)


Result = "str | Draft | None"
RuleFn = Callable[[list[Token], Draw], Result]


def _draft(toks: list[Token], i: int, pos: str, insert: bool = False, **request) -> Draft:
    """Mask toks[i] (or insert a masked word before it); `request` adds the checks the filler applies."""
    original = None if insert else toks[i]
    mask = Token(MASK, pos, MASK, " " if insert else toks[i].ws, original.tag if original else request.pop("tag", ""))
    new = toks[:i] + [mask] + toks[i + (0 if insert else 1):]
    avoid = sentence(toks).content_lemmas
    req = FillRequest(join(new), original.text if original else "", original.lemma if original else "", pos,
                      tag=mask.tag, avoid=avoid, **request)
    return Draft(tuple(new), i, req)


def _recase(before: list[Token], after: list[Token]) -> list[Token]:
    """The sentence's first word capitalised as the caption's was; a word moved off the front lower-cased."""
    out = list(after)
    if not out or not before:
        return out
    for i, t in enumerate(out):
        if i > 0 and t.text[:1].isupper() and t.pos != "PROPN" and t.text != "I" and t.text.lower() == before[0].text.lower():
            out[i] = t._replace(text=t.text.lower())
    if before[0].text[:1].isupper() and out[0].text[:1].islower():
        out[0] = out[0]._replace(text=out[0].text[:1].upper() + out[0].text[1:])
    return out


def _finish(before: list[Token], after: list[Token]) -> str:
    return join(grammar.fix_articles(_recase(before, after)))


# --- swaps -------------------------------------------------------------------------------------------

def _coordinated(toks: list[Token], i: int, j: int) -> bool:
    """Nouns of one list ("a man and a woman", "broccoli, rice and chicken"): swapping them keeps the meaning."""
    between = toks[i + 1:j]
    return any(t.text.lower() in ("and", "or", ",", "&") for t in between) and all(
        t.text.lower() in ("and", "or", ",", "&") or t.tag in _NP_TAGS for t in between)


def _modifiers(toks: list[Token], head: int) -> tuple[str, ...]:
    """The words of a noun phrase before its head, articles aside ("a small red cube" -> ("small", "red"))."""
    start, _ = noun_phrase(toks, head)
    return tuple(t.text.lower() for t in toks[start:head] if t.tag != "DT")


def _list_swap_keeps_meaning(toks: list[Token], i: int, j: int) -> bool:
    """Two items of one list: exchanging them keeps the meaning ("a man and a woman", "broccoli, rice and
    chicken"), unless only the heads move and the phrases' modifiers differ: "a red car and a blue truck" ->
    "a red truck and a blue car" is false, the swap SugarCrepe's swap_obj makes."""
    return _coordinated(toks, i, j) and (toks[i].tag != toks[j].tag or _modifiers(toks, i) == _modifiers(toks, j))


def _of_joined(toks: list[Token], i: int, j: int) -> bool:
    """"a slice of pizza": the two belong to one phrase; exchanging them makes no relation false."""
    between = toks[i + 1:j]
    return bool(between) and between[0].text.lower() == "of" and all(t.tag in _NP_TAGS for t in between[1:])


def noun_phrase(toks: list[Token], head: int) -> tuple[int, int]:
    """[start, end) of the noun phrase whose head is at `head`."""
    start = head
    while start > 0 and toks[start - 1].tag in _NP_TAGS and not grammar.is_head_noun(toks, start - 1):
        start -= 1
    return start, head + 1


def _swap_spans(toks: list[Token], a: tuple[int, int], b: tuple[int, int]) -> list[Token]:
    (a0, a1), (b0, b1) = a, b
    first, second = toks[a0:a1], toks[b0:b1]
    first = first[:-1] + [first[-1]._replace(ws=toks[b1 - 1].ws)]
    second = second[:-1] + [second[-1]._replace(ws=toks[a1 - 1].ws)]
    return toks[:a0] + second + toks[a1:b0] + first + toks[b1:]


def swap_nouns(toks: list[Token], rng: Draw | None = None) -> str | None:
    """Exchange the heads of the first two noun phrases that can be exchanged ("a dog chasing a cat" -> "a cat
    chasing a dog"). Heads with the same fine tag are exchanged alone (their modifiers stay: CE-CLIP's noun
    swap); a singular and a plural head are exchanged with their whole phrases, so that determiners and
    numbers still agree. Not exchanged: the items of a list when the swap keeps the meaning ("a man and a
    woman": it would be a hard positive; "a red car and a blue truck" is exchanged), the parts of "a slice of
    pizza", compound modifiers ("fire" of "fire truck"), two nouns with one lemma."""
    heads = sentence(toks).head_nouns
    for a, i in enumerate(heads):
        for j in heads[a + 1:]:
            if toks[i].lemma == toks[j].lemma or _list_swap_keeps_meaning(toks, i, j) or _of_joined(toks, i, j):
                continue
            if toks[i].tag == toks[j].tag:
                out = list(toks)
                out[i] = toks[j]._replace(ws=toks[i].ws)
                out[j] = toks[i]._replace(ws=toks[j].ws)
            else:
                out = _swap_spans(toks, noun_phrase(toks, i), noun_phrase(toks, j))
            return _finish(toks, out)
    return None


def swap_adjectives(toks: list[Token], rng: Draw | None = None) -> str | None:
    """Exchange two attributes of one kind between two noun phrases ("a red cube and a blue ball" -> "a blue
    cube and a red ball"). Only the same kind: a colour swapped with a size word lands beside the phrase's own
    size word ("a large red cube below a large blue star" -> "a blue red cube below a large large star")."""
    attrs = sentence(toks).attributes
    kind = {i: grammar.attribute_kinds()[toks[i].text.lower()][0] for i, _ in attrs}
    for a, (i, ni) in enumerate(attrs):
        for j, nj in attrs[a + 1:]:
            if nj != ni and kind[i] == kind[j] and toks[j].text.lower() != toks[i].text.lower():
                out = list(toks)
                out[i] = toks[j]._replace(ws=toks[i].ws)
                out[j] = toks[i]._replace(ws=toks[j].ws)
                return _finish(toks, out)
    return None


# --- replacements (filled) ---------------------------------------------------------------------------

def replace_noun(toks: list[Token], rng: Draw) -> Draft | None:
    """A head noun of a specific thing, by another noun of the same fine tag."""
    cands = sentence(toks).object_nouns
    if not cands:
        return None
    i = cands[rng.randrange(len(cands))]
    return _draft(toks, i, "NOUN", article=grammar.article_use(toks, i))


def replace_adjective(toks: list[Token], rng: Draw) -> Draft | None:
    """An attribute (an adjective of a known kind that modifies a noun) by another of its kind."""
    cands = [i for i, _ in sentence(toks).attributes]
    if not cands:
        return None
    i = cands[rng.randrange(len(cands))]
    kind, group = grammar.attribute_kinds()[toks[i].text.lower()]
    return _draft(toks, i, "ADJ", kind=kind, group=group)


def replace_verb(toks: list[Token], rng: Draw) -> Draft | None:
    """A verb by another of the same form that is used the same way (with or without a direct object)."""
    cands = sentence(toks).verbs
    if not cands:
        return None
    i = cands[rng.randrange(len(cands))]
    return _draft(toks, i, "VERB", usage=grammar.usage(toks, i))


def replace_relation(toks: list[Token], rng: Draw) -> str | Draft | None:
    """A spatial word by its contrary (no model needed); else a verb by the filler."""
    cands = [i for i, t in enumerate(toks) if t.text.lower() in CONTRARY and t.pos in ("ADP", "NOUN", "ADV", "ADJ")]
    if cands:
        i = cands[rng.randrange(len(cands))]
        word = CONTRARY[toks[i].text.lower()]
        out = list(toks)
        out[i] = Token(word, toks[i].pos, word, toks[i].ws, toks[i].tag)
        return _finish(toks, out)
    return replace_verb(toks, rng)


def add_object(toks: list[Token], rng: Draw) -> Draft | None:
    """"... and a <noun>" at the end of the caption."""
    if not sentence(toks).has_head:
        return None
    body = list(toks)
    while body and body[-1].pos == "PUNCT":
        body.pop()
    body[-1] = body[-1]._replace(ws=" ")
    extra = [Token("and", "CCONJ", "and", " ", "CC"), Token("a", "DET", "a", " ", "DT"), Token("x", "NOUN", "x", "", "NN")]
    new = body + extra
    return _draft(new, len(new) - 1, "NOUN", article="a")


ADDED_KINDS = ("colour", "size", "pattern", "material")  # an added attribute is of a kind the noun lacks


def add_attribute(toks: list[Token], rng: Draw) -> Draft | None:
    """An attribute of a kind the noun phrase lacks, in its place in English adjective order ("a dog" ->
    "a brown dog", "a red cube" -> "a small red cube"): never a second colour beside a colour."""
    sent = sentence(toks)
    kinds = grammar.attribute_kinds()
    have: dict[int, set[str]] = {}
    for adj, noun in sent.attributes:
        have.setdefault(noun, set()).add(kinds[toks[adj].text.lower()][0])
    options = []
    for head in sent.object_nouns:
        missing = [k for k in ADDED_KINDS if k not in have.get(head, set())]
        if missing:
            options.append((head, missing[0]))
    if not options:
        return None
    head, kind = options[rng.randrange(len(options))]
    start, _ = noun_phrase(toks, head)
    while start < head and toks[start].tag in ("DT", "PRP$", "CD", "PDT"):
        start += 1
    # size first, then pattern, then colour and material right before the noun (and its compound parts)
    at = start
    if kind != "size":
        while at < head and kinds.get(toks[at].text.lower(), ("", 0))[0] == "size":
            at += 1
    if kind in ("colour", "material"):
        while at < head and toks[at].tag in grammar.ADJ_TAGS | {"VBN", ","}:
            at += 1
    return _draft(toks, at, "ADJ", insert=True, tag="JJ", kind=kind)


# --- ARO order perturbations -------------------------------------------------------------------------

def _permute(toks: list[Token], idx: list[int], rng: Draw) -> list[Token]:
    texts = [toks[i].text for i in idx]
    rng.shuffle(texts)
    out = list(toks)
    for i, text in zip(idx, texts):
        out[i] = Token(text, toks[i].pos, text, toks[i].ws)
    return out


def shuffle_nouns_and_adj(toks: list[Token], rng: Draw) -> str:
    nouns = [i for i, t in enumerate(toks) if t.pos in ("NOUN", "PROPN")]
    adjs = [i for i, t in enumerate(toks) if t.pos == "ADJ"]
    return " ".join(t.text for t in _permute(_permute(toks, nouns, rng), adjs, rng))


def shuffle_allbut_nouns_and_adj(toks: list[Token], rng: Draw) -> str:
    rest = [i for i, t in enumerate(toks) if t.pos not in ("NOUN", "PROPN", "ADJ")]
    return " ".join(t.text for t in _permute(toks, rest, rng))


def _trigrams(toks: list[Token]) -> list[list[str]]:
    words = [t.text for t in toks]
    return [words[i:i + 3] for i in range(0, len(words), 3)]


def shuffle_within_trigrams(toks: list[Token], rng: Draw) -> str:
    out = []
    for tri in _trigrams(toks):
        rng.shuffle(tri)
        out += tri
    return " ".join(out)


def shuffle_trigrams(toks: list[Token], rng: Draw) -> str:
    tris = _trigrams(toks)
    rng.shuffle(tris)
    return " ".join(w for tri in tris for w in tri)


_FUNCTIONS: dict[str, RuleFn] = {
    "swap_nouns": swap_nouns,
    "replace_adj": replace_adjective,
    "replace_noun": replace_noun,
    "replace_verb": replace_verb,
    "sc_replace_obj": replace_noun,
    "sc_replace_att": replace_adjective,
    "sc_replace_rel": replace_relation,
    "sc_swap_obj": swap_nouns,
    "sc_swap_att": swap_adjectives,
    "sc_add_obj": add_object,
    "sc_add_att": add_attribute,
    "shuffle_nouns_and_adj": shuffle_nouns_and_adj,
    "shuffle_allbut_nouns_and_adj": shuffle_allbut_nouns_and_adj,
    "shuffle_within_trigrams": shuffle_within_trigrams,
    "shuffle_trigrams": shuffle_trigrams,
}
assert list(_FUNCTIONS) == list(NEGATIVE_RULES), "names.NEGATIVE_RULES and the rule functions disagree"
# rule name -> (neg_type, function), in the registry's order (CE-CLIP's four first)
RULES: dict[str, tuple[str, RuleFn]] = {rule: (NEGATIVE_RULES[rule], fn) for rule, fn in _FUNCTIONS.items()}


def _rng(seed: int, caption: str, rule: str) -> Draw:
    return Draw(f"{seed}|{rule}|{caption}")


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def _case_like(word: str, original: str) -> str:
    return word.capitalize() if original[:1].isupper() else word


def check_rules(rules: Iterable[str]) -> list[str]:
    rules = list(rules)
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise UserError(f"unknown negative rules {unknown}; known: {list(RULES)}")
    return rules


def generate(samples: Iterable[tuple[str, str]], nlp, filler: Filler, seed: int,
             rules: Iterable[str] = CE_CLIP_RULES, batch_size: int = 256) -> Iterator[Negative]:
    """One row per (sample, rule), in sample order then rule order; fills batched in one filler call."""
    samples, rules = list(samples), check_rules(rules)
    docs = nlp.pipe((c for _, c in samples), batch_size=batch_size)
    return from_tokens(((sid, c, tokens(d)) for (sid, c), d in zip(samples, docs)), filler, seed, rules)


def from_tokens(parsed: Iterable[tuple[str, str, list[Token]]], filler: Filler, seed: int,
                rules: Iterable[str] = CE_CLIP_RULES) -> Iterator[Negative]:
    """generate() on captions parsed already: (sample id, caption, tokens)."""
    rules = check_rules(rules)
    samples: list[tuple[str, str]] = []
    rows: list[list[Negative | None]] = []
    pending: list[tuple[int, int, Draft]] = []
    for n, (sid, caption, toks) in enumerate(parsed):
        samples.append((sid, caption))
        toks = Sentence(toks)
        has_words = any(t.text.isalpha() for t in toks)  # punctuation-only or empty: nothing to perturb
        row: list[Negative | None] = []
        for k, rule in enumerate(rules):
            neg_type, fn = RULES[rule]
            result = fn(toks, _rng(seed, caption, rule)) if has_words else None
            used_filler = filler.name if isinstance(result, Draft) else ""
            if isinstance(result, Draft):
                pending.append((n, k, result))
                row.append(None)
            elif result is None or _same_text(result, caption):
                row.append(Negative(sid, caption, PLACEHOLDER, neg_type, rule, used_filler, 0))
            else:
                row.append(Negative(sid, caption, result, neg_type, rule, used_filler, 1))
        rows.append(row)
    words = filler.fill([d.request for _, _, d in pending])
    for (n, k, d), word in zip(pending, words):
        sid, caption = samples[n]
        neg_type = RULES[rules[k]][0]
        if word is None:
            rows[n][k] = Negative(sid, caption, PLACEHOLDER, neg_type, rules[k], filler.name, 0)
            continue
        toks = list(d.toks)
        original = d.request.original or (toks[d.index + 1].text if d.index + 1 < len(toks) else "")
        toks[d.index] = Token(_case_like(word, original), d.request.pos, word, toks[d.index].ws, d.request.tag)
        text = join(grammar.fix_articles(toks))
        valid = int(not _same_text(text, caption))
        rows[n][k] = Negative(sid, caption, text if valid else PLACEHOLDER, neg_type, rules[k], filler.name, valid)
    for row in rows:
        yield from row


def ce_clip_negatives(samples, nlp, filler: Filler, seed: int, batch_size: int = 256) -> Iterator[Negative]:
    """CE-CLIP's four negatives per caption: relation, attribute, object, action."""
    return generate(samples, nlp, filler, seed, CE_CLIP_RULES, batch_size)
