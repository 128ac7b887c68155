"""The attribute–object and subject–relation–object combinations a text states, and the ones a rule-made
negative brings in that its caption did not.

A negative is trained as false for its image. When it states a combination that no training caption
states ("a red star" where the training captions only ever have blue stars), the model also learns that
the combination is false everywhere, and is then wrong on the test images that show it: swapping words in
training captions produces exactly the held-out combinations as negatives. The negatives stage counts every
combination of the training captions and drops (or keeps, counted) the negatives that bring in one rarer
than `negatives.min_combination_count`.

Combinations are read from fine tags, with the rules' own grammar: an attribute is an adjective of a known
kind with the noun it modifies ("att|red|star"), a relation is what stands between two noun phrases that are
not a list ("rel|circle|to the left of|square", lemmas for the nouns). A negative is not parsed again: its
words take their tags from its caption's tokens (a rule moves or replaces words, it does not re-tag them),
and a new word (a fill) takes its usual tag and lemma from the corpus word table.
"""

from __future__ import annotations

import re

from compclip.text.fillers import WordTable
from compclip.text.negatives import Sentence, _coordinated, _of_joined, noun_phrase
from compclip.text.nlp import SPATIAL_NOUNS, Token

_RELATION_TAGS = frozenset({"IN", "TO", "DT", "RB", "RBR", "JJR", "VBZ", "VBP", "VBG", "VBN", "VBD", "RP"})
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+|[^\sA-Za-z\d]")
_POS = {"NN": "NOUN", "NNS": "NOUN", "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ", "IN": "ADP", "TO": "PART",
        "DT": "DET", "CC": "CCONJ", "CD": "NUM", "VBN": "VERB", "VBG": "VERB", "VBZ": "VERB", "VBD": "VERB",
        "VBP": "VERB", "VB": "VERB", "RB": "ADV"}


def _relation_word(t: Token) -> bool:
    """What a relation is made of: "to the left of", "is above", "smaller than", "next to", "holding"."""
    return t.tag in _RELATION_TAGS or (t.tag in ("NN", "NNS") and t.text.lower() in SPATIAL_NOUNS)


def stated(toks: list[Token]) -> set[str]:
    """Every combination the tokens state."""
    s = Sentence(toks)
    out = {f"att|{toks[a].text.lower()}|{toks[n].lemma}" for a, n in s.attributes
           if toks[n].lemma != toks[a].text.lower()}  # "a square square": a shuffle's word salad
    heads = s.head_nouns
    for i, j in zip(heads, heads[1:]):
        if _coordinated(toks, i, j) or _of_joined(toks, i, j):
            continue
        between = toks[i + 1:noun_phrase(toks, j)[0]]
        if between and all(_relation_word(t) for t in between) and any(t.tag in ("IN", "TO") or t.pos == "VERB"
                                                                        for t in between):
            words = " ".join(t.text.lower() for t in between if t.tag != "DT" and t.lemma != "be")  # "is to the left of"
            out.add(f"rel|{toks[i].lemma}|{words}|{toks[j].lemma}")
    return out


def retag(text: str, caption: list[Token], table: WordTable) -> list[Token]:
    """A negative's words as tokens: tags from its caption's tokens, else from the corpus word table."""
    known: dict[str, Token] = {}
    for t in caption:
        known.setdefault(t.text.lower(), t)
    out = []
    for word in WORD.findall(text):
        t = known.get(word.lower())
        if t is None:
            tag = table.tag.get(word.lower(), "")
            t = Token(word, _POS.get(tag, "X"), table.lemma.get(word.lower(), word.lower()), " ", tag)
        out.append(t._replace(text=word, ws=" "))
    return out


def introduced(negative: str, caption: list[Token], table: WordTable) -> list[str]:
    """The combinations the negative states and its caption does not, sorted."""
    return sorted(stated(retag(negative, caption, table)) - stated(caption))
