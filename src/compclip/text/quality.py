"""An automatic quality report for rule-made negatives: each audited negative is parsed again, on its own,
and checked for what makes a negative grammatical and really false. The rules aim at these checks when
they write the negative; the audit measures whether the tagger, reading the result, agrees.

Checks (each only where it applies to the rule's kind of edit):
- tags_kept: the negative's fine tags are the caption's (same sequence for a replacement, the same tags
  in other places for a swap): no "woman filled on", no "several custom made cake".
- articles_agree: every a/an fits the next word.
- heads_only: a noun swap keeps the caption's noun-phrase heads (no "two monitors computer"); a noun
  replacement puts a head where a head was.
- modifiers_only: a replaced or swapped adjective modifies a noun, before and after.
- lemma_changed: the new word is not a form of the old one ("standing" -> "stands").
- not_near_synonym: a replaced noun or verb is not one that may still be true ("man" for "person",
  "carrying" for "holding"; lexicon/word_groups.json).
- same_kind: a replaced attribute is of the original's kind, from another group (a colour for a colour).
- usage_kept: a replaced verb keeps how it was used (with or without a direct object), and, given the corpus
  word table, the new verb was seen used that way ("a dog relaxing an SUV" fails: "relaxing" takes none).
The ARO shuffles are ungrammatical on purpose and are not audited.
"""

from __future__ import annotations

from collections import Counter

from compclip.hashing import stable_unit
from compclip.text import grammar
from compclip.text.nlp import Token

# neg_type -> the checks that apply
CHECKS = {
    "relation": ("tags_kept", "articles_agree", "heads_only"),
    "swap_obj": ("tags_kept", "articles_agree", "heads_only"),
    "swap_att": ("tags_kept", "articles_agree", "modifiers_only"),
    "object": ("tags_kept", "articles_agree", "heads_only", "lemma_changed", "not_near_synonym"),
    "replace_obj": ("tags_kept", "articles_agree", "heads_only", "lemma_changed", "not_near_synonym"),
    "attribute": ("tags_kept", "articles_agree", "modifiers_only", "lemma_changed", "same_kind"),
    "replace_att": ("tags_kept", "articles_agree", "modifiers_only", "lemma_changed", "same_kind"),
    "action": ("tags_kept", "articles_agree", "lemma_changed", "not_near_synonym", "usage_kept"),
    "replace_rel": ("articles_agree",),
    "add_obj": ("articles_agree",),
    "add_att": ("articles_agree",),
}


def audited(caption: str, seed: int, fraction: float) -> bool:
    """A stable share of captions is audited, whatever shard or run they are in."""
    return fraction > 0 and stable_unit(f"{seed}|quality|{caption}") < fraction


def _compound_parts(toks: list[Token]) -> set[str]:
    """Nouns that modify the noun after them: the "computer" of "computer monitors"."""
    return {t.lemma for i, t in enumerate(toks[:-1]) if t.pos == "NOUN" and toks[i + 1].pos == "NOUN"}


def _same_slot_tag(before: Token, after: Token) -> bool:
    """The new word fills the slot with the tag it had; an attribute may be JJ, VBN or a noun ("metal")."""
    kinds = grammar.attribute_kinds()
    if before.text.lower() in kinds and after.text.lower() in kinds:
        return {before.tag, after.tag} <= {"JJ", "VBN", "NN"}
    return before.tag == after.tag


def audit(caption: list[Token], negative: list[Token], neg_type: str, table=None) -> dict[str, bool]:
    """check -> passed, for one negative against its caption (both as parsed on their own); `table` (the
    corpus WordTable) lets usage_kept check the new verb's usual use too."""
    checks = CHECKS.get(neg_type, ())
    if not checks:
        return {}
    same_length = len(caption) == len(negative)
    changed = [i for i in range(len(caption)) if same_length and caption[i].text.lower() != negative[i].text.lower()
               and caption[i].text.lower() not in ("a", "an")]
    out: dict[str, bool] = {}
    for check in checks:
        if check == "tags_kept":
            if same_length and (len(changed) <= 2 or neg_type not in ("relation", "swap_obj", "swap_att")):
                # words replaced or two words exchanged: each slot keeps its tag
                out[check] = all(_same_slot_tag(caption[i], negative[i]) for i in changed)
            else:  # whole phrases exchanged: the same tags, in other places
                out[check] = Counter(t.tag for t in caption) == Counter(t.tag for t in negative)
        elif check == "articles_agree":
            out[check] = grammar.articles_agree(negative)
        elif check == "heads_only":
            if neg_type in ("relation", "swap_obj"):  # no part of a compound became a head of its own
                parts = _compound_parts(caption)
                out[check] = not any(grammar.is_head_noun(negative, i) and t.lemma in parts
                                     for i, t in enumerate(negative))
            else:
                out[check] = bool(changed) and all(grammar.is_head_noun(caption, i) and negative[i].pos == "NOUN"
                                                   for i in changed)
        elif check == "modifiers_only":
            out[check] = bool(changed) and all(grammar.modified_noun(caption, i) is not None and
                                               grammar.modified_noun(negative, i) is not None for i in changed)
        elif check == "lemma_changed":
            out[check] = bool(changed) and all(caption[i].lemma != negative[i].lemma for i in changed)
        elif check == "same_kind":
            kinds = grammar.attribute_kinds()
            out[check] = bool(changed) and all(
                caption[i].text.lower() in kinds and negative[i].text.lower() in kinds
                and kinds[caption[i].text.lower()][0] == kinds[negative[i].text.lower()][0]
                and kinds[caption[i].text.lower()][1] != kinds[negative[i].text.lower()][1] for i in changed)
        elif check == "not_near_synonym":
            pos = "NOUN" if neg_type in ("object", "replace_obj") else "VERB"
            out[check] = bool(changed) and all(negative[i].lemma not in grammar.near_synonyms(caption[i].lemma, pos)
                                               for i in changed)
        elif check == "usage_kept":
            out[check] = bool(changed) and all(
                grammar.usage(caption, i) == grammar.usage(negative, i)
                and (table is None or grammar.usage(caption, i) in table.usages.get(negative[i].text.lower(), ()))
                for i in changed)
    return out


class QualityReport:
    """Per rule: how many negatives were audited and the share passing each check."""

    def __init__(self):
        self.counts: dict[str, Counter] = {}
        self.audited: Counter = Counter()

    def add(self, rule: str, result: dict[str, bool]) -> None:
        self.audited[rule] += 1
        c = self.counts.setdefault(rule, Counter())
        for check, ok in result.items():
            c[check] += 0
            c[check] += int(ok)
        c["all"] += int(all(result.values()))

    def as_dict(self) -> dict:
        return {rule: {"audited": self.audited[rule],
                       "share_passing": {check: round(n / self.audited[rule], 4) for check, n in c.items()}}
                for rule, c in sorted(self.counts.items())}
