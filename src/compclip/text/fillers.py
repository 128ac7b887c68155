"""Fillers: given a caption with one word masked, propose a replacement word.

Two behind one interface: a masked language model (transformers' fill-mask pipeline; CE-CLIP used
distilroberta-base) and a lexicon of words from the corpus (no model needed). Both answer under the same
checks, on a table of the corpus's words (fine tag, lemma, how a verb is used): the replacement keeps the
original's fine tag, has another lemma, is no near-synonym of it, is of the same attribute kind (another
colour for a colour), and a verb is one seen used the same way (with or without a direct object).
A filler never returns the original word or its lemma; when it has nothing that passes it returns None.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from compclip.errors import UserError
from compclip.text import grammar
from compclip.text.nlp import SPATIAL_NOUNS, Token

MASK = "<mask>"


@dataclass(frozen=True)
class FillRequest:
    masked: str  # caption with MASK where the word was
    original: str
    lemma: str
    pos: str
    tag: str = ""  # fine tag the replacement must have ("" = any of the POS)
    usage: str = ""  # verbs: "object" / "none", as the original is used
    kind: str = ""  # adjectives: attribute kind ("colour"); the replacement comes from another group of it
    group: int = -1  # the original's group within the kind (-1: none, e.g. an added adjective)
    avoid: frozenset[str] = frozenset()  # lemmas of the caption's words: "a cake cutting a cake" is no negative
    article: str = ""  # singular nouns: "a" (counted, "a dog") or "bare" (mass, "in half"); grammar.article_use


@dataclass
class WordTable:
    """The corpus's words: each with its usual fine tag and lemma, verbs with how they were used."""

    tag: dict[str, str] = field(default_factory=dict)
    lemma: dict[str, str] = field(default_factory=dict)
    usages: dict[str, frozenset[str]] = field(default_factory=dict)
    articles: dict[str, frozenset[str]] = field(default_factory=dict)  # singular nouns: "a" and/or "bare" uses

    @classmethod
    def from_tokens(cls, token_lists: Iterable[list[Token]], exclude: frozenset[str] = SPATIAL_NOUNS) -> WordTable:
        """Each word joins its most frequent fine tag only, so a tagger slip ("cross" tagged VB once) does not
        make it a filler for the wrong slot."""
        tags: dict[str, Counter] = {}
        lemmas: dict[str, Counter] = {}
        usages: dict[str, set[str]] = {}
        articles: dict[str, set[str]] = {}
        for toks in token_lists:
            for i, t in enumerate(toks):
                w = t.text.lower()
                if not t.text.isalpha() or w in exclude or not t.tag:
                    continue
                tags.setdefault(w, Counter())[t.tag] += 1
                lemmas.setdefault(w, Counter())[t.lemma] += 1
                if grammar.is_action_verb(toks, i):
                    usages.setdefault(w, set()).add(grammar.usage(toks, i))
                elif t.tag == "NN" and grammar.is_head_noun(toks, i):  # not the "soccer" of "a soccer ball"
                    articles.setdefault(w, set()).add(grammar.article_use(toks, i))
        table = cls()
        for w in sorted(tags):
            table.tag[w] = tags[w].most_common(1)[0][0]
            table.lemma[w] = lemmas[w].most_common(1)[0][0]
            if w in usages:
                table.usages[w] = frozenset(usages[w])
            if w in articles:
                table.articles[w] = frozenset(articles[w] - {""})
        return table

    def digest(self) -> str:
        blob = repr(sorted((w, self.tag[w], self.lemma[w], sorted(self.usages.get(w, ())),
                            sorted(self.articles.get(w, ()))) for w in self.tag))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _tag_and_lemma(self, word: str) -> tuple[str | None, str]:
        if word in self.tag:
            return self.tag[word], self.lemma[word]
        if word in grammar.attribute_kinds():
            return "JJ", word  # the kind lists are base-form adjectives
        return None, word

    def failed_check(self, word: str, req: FillRequest) -> str | None:
        """The first check `word` fails as the answer to `req`, or None when it passes them all."""
        w = word.lower()
        if not w.isalpha():
            return "is_word"
        tag, lemma = self._tag_and_lemma(w)
        if tag is None:
            return "known_word"
        if not _same_tag(tag, req):
            return "same_tag"
        original = req.original.lower()
        if w == original or lemma in (req.lemma, original) or w == req.lemma:
            return "lemma_differs"
        if lemma in req.avoid or w in req.avoid:
            return "not_in_caption"
        if req.pos == "NOUN" and (lemma in grammar.near_synonyms(req.lemma, "NOUN") or
                                  w in grammar.generic_nouns() or lemma in grammar.generic_nouns()):
            return "not_near_synonym"
        if req.article and req.article not in self.articles.get(w, ()):
            return "same_article_use"  # "a soccer", "in yard"
        if req.pos == "VERB":
            if lemma in grammar.near_synonyms(req.lemma, "VERB"):
                return "not_near_synonym"
            if req.usage and req.usage not in self.usages.get(w, ()):
                return "same_usage"
        if req.kind:
            kind, group = grammar.attribute_kinds().get(w, ("", -1))
            if kind != req.kind or group == req.group:
                return "same_kind"
        return None

    def pools(self, req: FillRequest) -> list[list[str]]:
        """The words a lexicon draws from for requests like this one (before the per-word checks), in order
        of preference: an attribute comes from the corpus's words of its kind, else from the kind's list."""
        if req.kind:
            kind = sorted(w for w, (k, _) in grammar.attribute_kinds().items() if k == req.kind)
            return [[w for w in kind if w in self.tag], [w for w in kind if w not in self.tag]]
        return [[w for w, t in self.tag.items() if _same_tag(t, req)]]


def _same_tag(tag: str, req: FillRequest) -> bool:
    """The replacement's fine tag is the original's; an attribute may be JJ or VBN ("striped"), both
    modify the noun alike. Without a tag (an added word) any tag of the POS."""
    if not req.tag:
        return tag.startswith({"NOUN": "NN", "VERB": "VB", "ADJ": "JJ"}.get(req.pos, req.pos[:2]))
    if req.kind and req.tag in ("JJ", "VBN"):
        return tag in ("JJ", "VBN")
    return tag == req.tag


class Filler(Protocol):
    name: str

    def fill(self, requests: list[FillRequest]) -> list[str | None]: ...


class LexiconFiller:
    """A word from the corpus table that passes every check; the draw is seeded by the request, so the answer
    for a caption never depends on what else is in the batch (and can be cached)."""

    name = "lexicon"

    def __init__(self, table: WordTable, seed: int = 0):
        self.table, self.seed = table, seed
        self._pools: dict[tuple, list[list[str]]] = {}

    @classmethod
    def from_tokens(cls, token_lists, seed: int = 0, exclude: frozenset[str] = SPATIAL_NOUNS) -> LexiconFiller:
        return cls(WordTable.from_tokens(token_lists, exclude), seed)

    def fill(self, requests: list[FillRequest]) -> list[str | None]:
        return [self._one(r) for r in requests]

    def _one(self, req: FillRequest) -> str | None:
        key = (req.pos, req.tag, req.kind)
        if key not in self._pools:
            self._pools[key] = self.table.pools(req)
        h = hashlib.sha256(f"{self.seed}|{req.masked}|{req.original}".encode()).digest()
        draw = int.from_bytes(h[:8], "big")
        for pool in self._pools[key]:
            # walk the pool from a seeded start: the first word that passes (most do: the pool is pre-filtered)
            for k in range(len(pool)):
                word = pool[(draw + k) % len(pool)]
                if self.table.failed_check(word, req) is None:
                    return word
        return None


class MaskedLMFiller:
    """transformers fill-mask. CE-CLIP keeps the prediction at rank `rank` (0-based; the released code
    uses 3) so that the filler does not just restore a synonym; here the rank counts among the predictions
    that pass the corpus table's checks (fine tag, lemma, kind, verb usage), so it needs a wider top_k."""

    name = "mlm"

    def __init__(self, model: str, table: WordTable, top_k: int = 50, rank: int = 3, batch_size: int = 64,
                 device: str = "cpu"):
        from transformers import pipeline

        try:
            self.pipe = pipeline("fill-mask", model=model, top_k=top_k, device=device)
        except OSError as e:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise UserError(
                f"fill-mask model {model!r} could not be loaded ({e}). Give a local folder saved with "
                "save_pretrained, or download the model into the Hugging Face cache on a machine with network "
                f"(huggingface-cli download {model})" + (" - HF_HUB_OFFLINE=1 is set" if offline else "")) from None
        self.mask_token = self.pipe.tokenizer.mask_token
        self.table, self.rank, self.batch_size = table, rank, batch_size

    def fill(self, requests: list[FillRequest]) -> list[str | None]:
        if not requests:
            return []
        texts = [r.masked.replace(MASK, self.mask_token, 1) for r in requests]
        preds = self.pipe(texts, batch_size=self.batch_size)
        if len(requests) == 1 and preds and isinstance(preds[0], dict):
            preds = [preds]  # the pipeline unwraps a single input
        out = []
        for req, cands in zip(requests, preds):
            words = list(dict.fromkeys(c["token_str"].strip().lower() for c in cands))
            valid = [w for w in words if self.table.failed_check(w, req) is None]
            out.append(valid[min(self.rank, len(valid) - 1)] if valid else None)
        return out
