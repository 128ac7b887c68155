"""CE-CLIP hard negatives from coarse POS: relation (swap two nouns), attribute (replace an adjective),
object (replace a noun), action (replace a verb). Four per caption, in that order, so batches stay
rectangular; a type the caption does not have is the placeholder '###' with valid=0 (paper behaviour).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from compclip.text.fillers import MASK, Filler, FillRequest
from compclip.text.nlp import SPATIAL_NOUNS, Token, join, tokens

PLACEHOLDER = "###"
CE_CLIP_TYPES = ("relation", "attribute", "object", "action")  # position k = type k
_POS = {"attribute": "ADJ", "object": "NOUN", "action": "VERB"}


@dataclass(frozen=True)
class Negative:
    sample_id: str
    caption: str
    negative: str
    neg_type: str
    rule: str
    filler: str
    valid: int


def _rng(seed: int, caption: str, what: str) -> random.Random:
    """Per caption and rule: the same caption gets the same negative whatever batch it is in."""
    return random.Random(hashlib.sha256(f"{seed}|{what}|{caption}".encode()).digest())


def _is_object_noun(t: Token) -> bool:
    return t.pos == "NOUN" and t.text.isalpha() and t.text.lower() not in SPATIAL_NOUNS


def swap_nouns(toks: list[Token]) -> str | None:
    """Exchange the first two nouns that differ ("a dog chasing a cat" -> "a cat chasing a dog")."""
    idx = [i for i, t in enumerate(toks) if _is_object_noun(t)]
    for j in idx[1:]:
        if toks[j].text.lower() != toks[idx[0]].text.lower():
            i = idx[0]
            out = list(toks)
            out[i] = Token(toks[j].text, toks[j].pos, toks[j].lemma, toks[i].ws)
            out[j] = Token(toks[i].text, toks[i].pos, toks[i].lemma, toks[j].ws)
            return join(out)
    return None


def mask_one(toks: list[Token], pos: str, rng: random.Random) -> tuple[FillRequest, int] | None:
    cands = [i for i, t in enumerate(toks) if t.pos == pos and t.text.isalpha()
             and (pos != "NOUN" or _is_object_noun(t))]
    if not cands:
        return None
    i = cands[rng.randrange(len(cands))]
    masked = join(toks[:i] + [Token(MASK, pos, MASK, toks[i].ws)] + toks[i + 1:])
    return FillRequest(masked, toks[i].text, toks[i].lemma, pos), i


def _case_like(word: str, original: str) -> str:
    return word.capitalize() if original[:1].isupper() else word


def ce_clip_negatives(samples: Iterable[tuple[str, str]], nlp, filler: Filler, seed: int,
                      batch_size: int = 256) -> Iterator[Negative]:
    """Four negatives per (sample_id, caption), batched through nlp.pipe and the filler."""
    samples = list(samples)
    docs = nlp.pipe((c for _, c in samples), batch_size=batch_size)
    pending: list[tuple[int, str, FillRequest, list[Token], int]] = []
    rows: list[list[Negative | None]] = []
    for n, ((sid, caption), doc) in enumerate(zip(samples, docs)):
        toks = tokens(doc)
        swapped = swap_nouns(toks)
        row: list[Negative | None] = [
            Negative(sid, caption, swapped or PLACEHOLDER, "relation", "swap_nouns", "", int(swapped is not None))]
        for neg_type in ("attribute", "object", "action"):
            m = mask_one(toks, _POS[neg_type], _rng(seed, caption, neg_type))
            if m is None:
                row.append(Negative(sid, caption, PLACEHOLDER, neg_type, f"replace_{_POS[neg_type].lower()}",
                                    filler.name, 0))
            else:
                row.append(None)
                pending.append((n, neg_type, m[0], toks, m[1]))
        rows.append(row)
    words = filler.fill([p[2] for p in pending])
    for (n, neg_type, req, toks, i), word in zip(pending, words):
        sid, caption = samples[n]
        k = CE_CLIP_TYPES.index(neg_type)
        rule = f"replace_{req.pos.lower()}"
        if word is None:
            rows[n][k] = Negative(sid, caption, PLACEHOLDER, neg_type, rule, filler.name, 0)
            continue
        out = list(toks)
        out[i] = Token(_case_like(word, toks[i].text), req.pos, word, toks[i].ws)
        rows[n][k] = Negative(sid, caption, join(out), neg_type, rule, filler.name, 1)
    for row in rows:
        yield from row
