"""Hard positives: rewrites of a caption that keep its meaning (Hard Positives, ECCV 2024).

Rules, on spaCy tokens and a curated lexicon shipped in text/lexicon/positives.json:
- converse_relation: "A left of B" -> "B right of A" (above/below, in front of/behind, bigger/smaller...)
- swap_and: "A and B" -> "B and A" when A and B are plain noun phrases heading a clause
- passive / active: "a man riding a horse" <-> "a horse being ridden by a man" (transitive verbs in the lexicon)
- synonym: one word by a curated synonym ("large" -> "big")
A rule returns None when the caption has nothing it can rewrite safely.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

from compclip.names import POSITIVE_RULES
from compclip.text.nlp import SPATIAL_NOUNS, Token

LEXICON = Path(__file__).parent / "lexicon" / "positives.json"
NP_POS = {"DET", "ADJ", "NOUN", "NUM", "PROPN"}


def _in_np(t: Token) -> bool:
    """Part of a simple noun phrase; participles used as adjectives ("striped", VBN) count."""
    return t.pos in NP_POS or t.tag == "VBN"

BOUNDARY = {",", "and", ";"}


@lru_cache(maxsize=1)
def lexicon() -> dict:
    return json.loads(LEXICON.read_text())


def _words(toks: list[Token]) -> list[str]:
    return [t.text.lower() for t in toks]


def _render(words: list[str], capital: bool) -> str:
    text = " ".join(w for w in words if w)
    for p in (",", ".", ";", "!", "?"):
        text = text.replace(f" {p}", p)
    return text[:1].upper() + text[1:] if capital else text


def _clause_start(toks: list[Token], end: int) -> int | None:
    """Start of the noun phrase ending just before `end`, if that phrase opens a clause."""
    start = end
    while start > 0 and _in_np(toks[start - 1]) and toks[start - 1].text.lower() not in BOUNDARY:
        start -= 1
    if start == end or toks[end - 1].pos not in ("NOUN", "PROPN") or toks[end - 1].text.lower() in SPATIAL_NOUNS:
        return None
    before = _words(toks[max(0, start - 2):start])
    if start == 0 or before[-1:] and before[-1] in BOUNDARY or before == ["there", "is"] or before == ["there", "are"]:
        return start
    return None


def _phrase_end(toks: list[Token], start: int) -> int | None:
    """End (exclusive) of the noun phrase starting at `start`: through its last consecutive noun."""
    k = start
    while k < len(toks) and _in_np(toks[k]) and toks[k].pos not in ("NOUN", "PROPN"):
        k += 1
    if k == start or k == len(toks) or toks[k].pos not in ("NOUN", "PROPN"):
        return None
    while k < len(toks) and toks[k].pos in ("NOUN", "PROPN") and toks[k].text.lower() not in SPATIAL_NOUNS:
        k += 1
    return k


def _find_phrase(words: list[str], phrases) -> tuple[int, int, str] | None:
    for p in sorted(phrases, key=lambda x: -len(x.split())):
        n = len(p.split())
        for i in range(len(words) - n + 1):
            if " ".join(words[i:i + n]) == p:
                return i, i + n, p
    return None


def _texts(toks: list[Token]) -> list[str]:
    """Token texts, with a capitalised first word lowered (it may move), proper nouns kept as they are."""
    texts = [t.text for t in toks]
    if texts and toks[0].pos != "PROPN":
        texts[0] = texts[0].lower()
    return texts


def converse_relation(toks: list[Token], rng: random.Random) -> str | None:
    conv = lexicon()["converse"]
    words = _words(toks)
    found = _find_phrase(words, conv)
    if not found:
        return None
    s, e, phrase = found
    cop = s - 1 if s > 0 and words[s - 1] in ("is", "are") else None
    a_end = cop if cop is not None else s
    a_start = _clause_start(toks, a_end)
    b_end = _phrase_end(toks, e)
    if a_start is None or b_end is None:
        return None
    t = _texts(toks)
    out = t[:a_start] + t[e:b_end] + ([t[cop]] if cop is not None else []) + conv[phrase].split() + \
        t[a_start:a_end] + t[b_end:]
    return _render(out, toks[0].text[:1].isupper())


def swap_and(toks: list[Token], rng: random.Random) -> str | None:
    words = _words(toks)
    for k, w in enumerate(words):
        if w != "and":
            continue
        a_start = _clause_start(toks, k)
        b_end = _phrase_end(toks, k + 1)
        if a_start is None or b_end is None:
            continue
        if b_end < len(words) and words[b_end] not in BOUNDARY | {".", "!"}:
            continue  # "A and B sitting on ..." : B is the subject of what follows, keep the order
        t = _texts(toks)
        out = t[:a_start] + t[k + 1:b_end] + ["and"] + t[a_start:k] + t[b_end:]
        return _render(out, toks[0].text[:1].isupper())
    return None


def passive(toks: list[Token], rng: random.Random) -> str | None:
    parts = lexicon()["participles"]
    words = _words(toks)
    for v, w in enumerate(words):
        if w not in parts or toks[v].pos != "VERB":
            continue
        a_start = _clause_start(toks, v)
        b_end = _phrase_end(toks, v + 1)
        if a_start is None or b_end is None:
            continue
        aux = "being" if w.endswith("ing") else "is"
        t = _texts(toks)
        out = t[:a_start] + t[v + 1:b_end] + [aux, parts[w], "by"] + t[a_start:v] + t[b_end:]
        return _render(out, toks[0].text[:1].isupper())
    return None


def active(toks: list[Token], rng: random.Random) -> str | None:
    """The converse of `passive`: "a horse being ridden by a man" -> "a man riding a horse"."""
    ing = {pp: verb for verb, pp in lexicon()["participles"].items() if verb.endswith("ing")}
    words = _words(toks)
    for v in range(1, len(words) - 2):
        if words[v] in ing and words[v - 1] in ("is", "are", "being") and words[v + 1] == "by":
            b_start = _clause_start(toks, v - 1)
            a_end = _phrase_end(toks, v + 2)
            if b_start is None or a_end is None:
                continue
            t = _texts(toks)
            out = t[:b_start] + t[v + 2:a_end] + [ing[words[v]]] + t[b_start:v - 1] + t[a_end:]
            return _render(out, toks[0].text[:1].isupper())
    return None


def synonym(toks: list[Token], rng: random.Random) -> str | None:
    syn = lexicon()["synonyms"]
    cands = [i for i, t in enumerate(toks) if t.text.lower() in syn]
    if not cands:
        return None
    i = cands[rng.randrange(len(cands))]
    options = syn[toks[i].text.lower()]
    t = _texts(toks)
    t[i] = options[rng.randrange(len(options))]
    return _render(t, toks[0].text[:1].isupper())


RULES = {"converse_relation": converse_relation, "swap_and": swap_and, "passive": passive, "active": active,
         "synonym": synonym}
assert tuple(RULES) == POSITIVE_RULES, "names.POSITIVE_RULES and the rule functions disagree"
