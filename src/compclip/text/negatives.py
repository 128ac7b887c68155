"""Hard negatives from captions, rule by rule, on spaCy's coarse POS.

Every rule returns, for one caption, either a finished negative, None (the caption lacks what the rule
needs), or a Draft with one masked word for a filler. Drafts of a whole batch go to the filler at once.
Each caption gets one row per rule, so batches stay rectangular: a rule that does not apply gives the
placeholder '###' with valid=0 (CE-CLIP paper behaviour).

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

from compclip.names import CE_CLIP_RULES, NEGATIVE_RULES, PLACEHOLDER
from compclip.text.fillers import MASK, Filler, FillRequest
from compclip.text.nlp import SPATIAL_NOUNS, Token, join, tokens
from compclip.errors import UserError

CE_CLIP_TYPES = ("relation", "attribute", "object", "action")  # position k = type k

# Relation words with a contrary meaning, for replace_rel without a model.
CONTRARY = {"left": "right", "right": "left", "above": "below", "below": "above", "on": "under",
            "under": "on", "over": "under", "inside": "outside", "outside": "inside", "in": "outside",
            "behind": "in front of", "front": "back", "top": "bottom", "bottom": "top", "bigger": "smaller",
            "smaller": "bigger", "larger": "smaller", "near": "far from", "with": "without",
            "toward": "away from", "into": "out of", "up": "down", "down": "up"}


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


Result = "str | Draft | None"
RuleFn = Callable[[list[Token], random.Random], Result]


def _is_object_noun(t: Token) -> bool:
    return t.pos == "NOUN" and t.text.isalpha() and t.text.lower() not in SPATIAL_NOUNS


def _draft(toks: list[Token], i: int, pos: str, original: Token | None, insert: bool = False) -> Draft:
    """Mask toks[i] (or insert a masked word before it)."""
    mask = Token(MASK, pos, MASK, " " if insert else toks[i].ws)
    new = toks[:i] + [mask] + toks[i + (0 if insert else 1):]
    req = FillRequest(join(new), original.text if original else "", original.lemma if original else "", pos)
    return Draft(tuple(new), i, req)


def _swap(toks: list[Token], i: int, j: int) -> str:
    out = list(toks)
    out[i] = Token(toks[j].text, toks[j].pos, toks[j].lemma, toks[i].ws)
    out[j] = Token(toks[i].text, toks[i].pos, toks[i].lemma, toks[j].ws)
    return join(out)


# --- swaps -------------------------------------------------------------------------------------------

def _coordinated(toks: list[Token], i: int, j: int) -> bool:
    """Nouns joined only by "and" ("a man and a woman"): swapping them keeps the meaning."""
    between = toks[i + 1:j]
    return any(t.text.lower() == "and" for t in between) and all(
        t.text.lower() in ("and", ",") or t.pos in ("DET", "ADJ", "NUM") for t in between)


def swap_nouns(toks: list[Token], rng: random.Random | None = None) -> str | None:
    """Exchange the first two nouns that differ ("a dog chasing a cat" -> "a cat chasing a dog").
    Coordinated nouns ("a man and a woman") are skipped: that swap would be a hard positive."""
    idx = [i for i, t in enumerate(toks) if _is_object_noun(t)]
    for a, i in enumerate(idx):
        for j in idx[a + 1:]:
            if toks[j].text.lower() != toks[i].text.lower() and not _coordinated(toks, i, j):
                return _swap(toks, i, j)
    return None


def _noun_phrase_adjectives(toks: list[Token]) -> list[int]:
    """Index of the adjective nearest each object noun (at most one per noun)."""
    out = []
    for n, t in enumerate(toks):
        if _is_object_noun(t):
            k = n - 1
            while k >= 0 and toks[k].pos in ("ADJ", "NOUN", "VERB", "PROPN") and toks[k].pos != "ADJ":
                k -= 1
            if k >= 0 and toks[k].pos == "ADJ" and (not out or out[-1] != k):
                out.append(k)
    return out


def swap_adjectives(toks: list[Token], rng: random.Random | None = None) -> str | None:
    """Exchange the adjectives of two noun phrases ("a red cube and a blue ball" -> "a blue cube and a red ball")."""
    adj = _noun_phrase_adjectives(toks)
    j = next((j for j in adj[1:] if toks[j].text.lower() != toks[adj[0]].text.lower()), None)
    return _swap(toks, adj[0], j) if j is not None else None


# --- replacements (filled) ---------------------------------------------------------------------------

def _replace(pos: str) -> RuleFn:
    def rule(toks: list[Token], rng: random.Random) -> Draft | None:
        cands = [i for i, t in enumerate(toks) if t.pos == pos and t.text.isalpha()
                 and (pos != "NOUN" or _is_object_noun(t))]
        if not cands:
            return None
        i = cands[rng.randrange(len(cands))]
        return _draft(toks, i, pos, toks[i])
    rule.__name__ = f"replace_{pos.lower()}"
    return rule


def replace_relation(toks: list[Token], rng: random.Random) -> str | Draft | None:
    """A spatial word by its contrary (no model needed); else a verb by the filler."""
    cands = [i for i, t in enumerate(toks) if t.text.lower() in CONTRARY and t.pos in ("ADP", "NOUN", "ADV", "ADJ")]
    if cands:
        i = cands[rng.randrange(len(cands))]
        word = CONTRARY[toks[i].text.lower()]
        out = list(toks)
        out[i] = Token(word, toks[i].pos, word, toks[i].ws)
        return join(out)
    return _replace("VERB")(toks, rng)


def add_object(toks: list[Token], rng: random.Random) -> Draft | None:
    """"... and a <noun>" at the end of the caption."""
    if not any(_is_object_noun(t) for t in toks):
        return None
    body = list(toks)
    while body and body[-1].pos == "PUNCT":
        body.pop()
    body[-1] = Token(body[-1].text, body[-1].pos, body[-1].lemma, " ")
    extra = [Token("and", "CCONJ", "and", " "), Token("a", "DET", "a", " "), Token("x", "NOUN", "x", "")]
    new = body + extra
    return _draft(new, len(new) - 1, "NOUN", None)


def add_attribute(toks: list[Token], rng: random.Random) -> Draft | None:
    """An adjective before a noun that has none ("a dog" -> "a <adj> dog")."""
    bare = [i for i, t in enumerate(toks) if _is_object_noun(t) and (i == 0 or toks[i - 1].pos not in ("ADJ",))]
    if not bare:
        return None
    return _draft(toks, bare[rng.randrange(len(bare))], "ADJ", None, insert=True)


# --- ARO order perturbations -------------------------------------------------------------------------

def _permute(toks: list[Token], idx: list[int], rng: random.Random) -> list[Token]:
    texts = [toks[i].text for i in idx]
    rng.shuffle(texts)
    out = list(toks)
    for i, text in zip(idx, texts):
        out[i] = Token(text, toks[i].pos, text, toks[i].ws)
    return out


def shuffle_nouns_and_adj(toks: list[Token], rng: random.Random) -> str:
    nouns = [i for i, t in enumerate(toks) if t.pos in ("NOUN", "PROPN")]
    adjs = [i for i, t in enumerate(toks) if t.pos == "ADJ"]
    return " ".join(t.text for t in _permute(_permute(toks, nouns, rng), adjs, rng))


def shuffle_allbut_nouns_and_adj(toks: list[Token], rng: random.Random) -> str:
    rest = [i for i, t in enumerate(toks) if t.pos not in ("NOUN", "PROPN", "ADJ")]
    return " ".join(t.text for t in _permute(toks, rest, rng))


def _trigrams(toks: list[Token]) -> list[list[str]]:
    words = [t.text for t in toks]
    return [words[i:i + 3] for i in range(0, len(words), 3)]


def shuffle_within_trigrams(toks: list[Token], rng: random.Random) -> str:
    out = []
    for tri in _trigrams(toks):
        rng.shuffle(tri)
        out += tri
    return " ".join(out)


def shuffle_trigrams(toks: list[Token], rng: random.Random) -> str:
    tris = _trigrams(toks)
    rng.shuffle(tris)
    return " ".join(w for tri in tris for w in tri)


_FUNCTIONS: dict[str, RuleFn] = {
    "swap_nouns": swap_nouns,
    "replace_adj": _replace("ADJ"),
    "replace_noun": _replace("NOUN"),
    "replace_verb": _replace("VERB"),
    "sc_replace_obj": _replace("NOUN"),
    "sc_replace_att": _replace("ADJ"),
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


def _rng(seed: int, caption: str, rule: str) -> random.Random:
    """Per caption and rule: the same caption gets the same negative whatever batch it is in."""
    return random.Random(hashlib.sha256(f"{seed}|{rule}|{caption}".encode()).digest())


def _fix_article(toks: list[Token], i: int) -> None:
    """a/an before a filled-in word ("a orange truck" -> "an orange truck")."""
    if i > 0 and toks[i - 1].text.lower() in ("a", "an"):
        want = "an" if toks[i].text[:1].lower() in "aeiou" else "a"
        prev = toks[i - 1]
        text = want.capitalize() if prev.text[:1].isupper() else want
        toks[i - 1] = Token(text, prev.pos, prev.lemma, prev.ws, prev.tag)


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def _case_like(word: str, original: str) -> str:
    return word.capitalize() if original[:1].isupper() else word


def generate(samples: Iterable[tuple[str, str]], nlp, filler: Filler, seed: int,
             rules: Iterable[str] = CE_CLIP_RULES, batch_size: int = 256) -> Iterator[Negative]:
    """One row per (sample, rule), in sample order then rule order; fills batched in one filler call."""
    samples, rules = list(samples), list(rules)
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise UserError(f"unknown negative rules {unknown}; known: {list(RULES)}")
    rows: list[list[Negative | None]] = []
    pending: list[tuple[int, int, Draft]] = []
    docs = nlp.pipe((c for _, c in samples), batch_size=batch_size)
    for n, ((sid, caption), doc) in enumerate(zip(samples, docs)):
        toks = tokens(doc)
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
        toks[d.index] = Token(_case_like(word, original), d.request.pos, word, toks[d.index].ws)
        _fix_article(toks, d.index)
        text = join(toks)
        valid = int(not _same_text(text, caption))
        rows[n][k] = Negative(sid, caption, text if valid else PLACEHOLDER, neg_type, rules[k], filler.name, valid)
    for row in rows:
        yield from row


def ce_clip_negatives(samples, nlp, filler: Filler, seed: int, batch_size: int = 256) -> Iterator[Negative]:
    """CE-CLIP's four negatives per caption: relation, attribute, object, action."""
    return generate(samples, nlp, filler, seed, CE_CLIP_RULES, batch_size)
