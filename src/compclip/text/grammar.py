"""What keeps a rule-made negative grammatical and really false on real captions, on spaCy's fine tags.

Positions a rule may change: heads of noun phrases (not the "fire" of "fire truck", not the "group" of
"a group of"), adjectives that modify a noun ("a red bus", not "the bus is red", not "very"), verbs with
how they are used (with a direct object or without). A replacement keeps the fine tag (VBG stays VBG,
NNS stays NNS), has another lemma, comes from another group of the same attribute kind (a colour for a
colour) and never from the original's group of near-synonyms; articles are made to agree afterwards.
The word lists are in lexicon/word_groups.json.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from compclip.text.nlp import SPATIAL_NOUNS, Token

NOUN_TAGS = frozenset({"NN", "NNS"})
ADJ_TAGS = frozenset({"JJ", "JJR", "JJS"})
VERB_TAGS = frozenset({"VBG", "VBD", "VBZ", "VBP", "VBN", "VB"})
AUXILIARIES = frozenset({"be", "have", "do", "can", "will", "would", "could", "should", "may", "might", "must",
                         "get", "seem", "appear", "become"})
# what may stand between an adjective and the noun it modifies: "a black and white cat", "a big, red bus"
_NP_INNER = frozenset({"JJ", "JJR", "JJS", ",", "CC", "HYPH", "VBN", "NN", "NNS", "RBS", "RB"})
# tags that begin the object of a verb: "holding *a* bat", "eating *pizza*", "walking *her* dog"
_OBJECT_START = frozenset({"DT", "CD", "PRP", "PRP$", "NN", "NNS", "NNP", "NNPS", "JJ", "JJR", "JJS", "PDT"})


@lru_cache(maxsize=1)
def _lists() -> dict:
    return json.loads((Path(__file__).parent / "lexicon" / "word_groups.json").read_text())


@lru_cache(maxsize=1)
def attribute_kinds() -> dict[str, tuple[str, int]]:
    """adjective -> (kind, group index within the kind); a word in two kinds keeps the first."""
    out: dict[str, tuple[str, int]] = {}
    for kind, groups in _lists()["attribute_kinds"].items():
        for g, words in enumerate(groups):
            for w in words:
                out.setdefault(w, (kind, g))
    return out


@lru_cache(maxsize=2)
def _groups(name: str) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for group in _lists()[name]:
        for w in group:
            out.setdefault(w, set()).update(group)
    return {w: frozenset(g) for w, g in out.items()}


def near_synonyms(lemma: str, pos: str) -> frozenset[str]:
    """Words that may be true where `lemma` is said (its own group(s)); includes the lemma itself."""
    return _groups("noun_groups" if pos == "NOUN" else "verb_groups").get(lemma, frozenset()) | {lemma}


@lru_cache(maxsize=1)
def generic_nouns() -> frozenset[str]:
    return frozenset(_lists()["generic_nouns"])


@lru_cache(maxsize=1)
def quantity_nouns() -> frozenset[str]:
    return frozenset(_lists()["quantity_nouns"])


def is_head_noun(toks: list[Token], i: int) -> bool:
    """The head of a noun phrase: a common noun not followed by another noun (the "fire" of "fire truck"
    modifies "truck"), not a spatial word ("top" of "on top of"), not the quantity of "a group of"."""
    t = toks[i]
    if t.pos != "NOUN" or t.tag not in NOUN_TAGS or not t.text.isalpha() or t.text.lower() in SPATIAL_NOUNS:
        return False
    nxt = toks[i + 1] if i + 1 < len(toks) else None
    if nxt is not None and (nxt.pos in ("NOUN", "PROPN") or nxt.tag == "HYPH"):
        return False
    if nxt is not None and nxt.text.lower() == "of" and t.text.lower() in quantity_nouns():
        return False
    return True


def is_object_noun(toks: list[Token], i: int) -> bool:
    """A head noun that names something specific (not "food", "thing", "people")."""
    return is_head_noun(toks, i) and toks[i].lemma not in generic_nouns() and toks[i].text.lower() not in generic_nouns()


def modified_noun(toks: list[Token], i: int) -> int | None:
    """The noun an adjective at i modifies ("a *black* and white cat" -> cat), or None when it does not
    modify one (predicative "is red", an adverb, a mis-tagged word before a verb)."""
    t = toks[i]
    attributive_noun = t.tag == "NN" and t.text.lower() in attribute_kinds()  # "orange" of "orange cross"
    if (t.tag not in ADJ_TAGS | {"VBN"} and not attributive_noun) or not t.text.isalpha():
        return None
    j = i + 1
    while j < len(toks) and toks[j].tag in _NP_INNER:
        if toks[j].pos == "NOUN" and is_head_noun(toks, j):
            return j
        if toks[j].tag in ("RB", "RBS") and toks[j - 1].tag not in (",", "CC"):
            return None  # "red very" is no noun phrase
        j += 1
    return None


def is_attribute(toks: list[Token], i: int) -> bool:
    """An adjective of a known kind (colour, size, material, ...) that modifies a noun."""
    return toks[i].text.lower() in attribute_kinds() and modified_noun(toks, i) is not None


def usage(toks: list[Token], i: int) -> str:
    """How the verb at i is used: "object" (a direct object follows, maybe after a particle) or "none"."""
    j = i + 1
    if j < len(toks) and toks[j].tag == "RP":
        j += 1
    return "object" if j < len(toks) and toks[j].tag in _OBJECT_START else "none"


def is_action_verb(toks: list[Token], i: int) -> bool:
    t = toks[i]
    return t.pos == "VERB" and t.tag in VERB_TAGS and t.text.isalpha() and t.lemma not in AUXILIARIES


_MODIFIERS = frozenset({"JJ", "JJR", "JJS", "NN", "NNS", "VBN", "HYPH", "RB", "RBS", "CC", ","})


def article_use(toks: list[Token], i: int) -> str:
    """How the singular noun at i is determined: "a" ("a dog": it is counted), "bare" ("in half", "with
    pepperoni": used as a mass noun) or "" (the, this, his, a number: either fits)."""
    if toks[i].tag != "NN":
        return ""
    j = i - 1
    while j >= 0 and toks[j].tag in _MODIFIERS:
        j -= 1
    if j < 0 or toks[j].tag not in ("DT", "PRP$", "CD", "PDT", "POS", "WP$"):
        return "bare"
    return "a" if toks[j].text.lower() in ("a", "an") else ""


def article_for(word: str) -> str:
    """'a' or 'an' by the sound of the word's start (spelling, with the common exceptions)."""
    w = word.lower()
    if w.startswith(("hour", "honest", "honor", "honour", "heir")):
        return "an"
    if w.startswith(("uni", "use", "usu", "uti", "eu", "one", "once", "ewe", "uk", "ura")):
        return "a"
    return "an" if w[:1] in ("a", "e", "i", "o", "u") else "a"


def fix_articles(toks: list[Token]) -> list[Token]:
    """Every a/an agrees with the word after it ("an cubicle" -> "a cubicle")."""
    out = None
    for i, t in enumerate(toks[:-1]):
        low = t.text.lower()
        if (low == "a" or low == "an") and t.tag == "DT" and toks[i + 1].text.isalpha():
            want = article_for(toks[i + 1].text)
            if low != want:
                out = out or list(toks)
                out[i] = t._replace(text=want.capitalize() if t.text[:1].isupper() else want, lemma=want)
    return out or toks


def articles_agree(toks: list[Token]) -> bool:
    return all(toks[i].text.lower() != ("an" if article_for(toks[i + 1].text) == "a" else "a")
               for i in range(len(toks) - 1) if toks[i].text.lower() in ("a", "an") and toks[i + 1].text.isalpha())
