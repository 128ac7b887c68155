"""Negatives on real-style captions: each failure class seen on real COCO captions, a hand-labelled set of
(caption, negative) pairs with the expected verdict of the quality audit, and the audit's figures on the 100
shipped captions (each CE-CLIP type at least 90% passing every check)."""

import json
from collections import Counter
from pathlib import Path

import pytest

from compclip.text.fillers import FillRequest, LexiconFiller, WordTable
from compclip.text.negatives import ce_clip_negatives, swap_nouns
from compclip.text.nlp import load_spacy, tokens
from compclip.text.quality import audit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CAPTIONS = [c.strip() for c in (FIXTURES / "coco_style_captions.txt").read_text().splitlines() if c.strip()]
# sentences that show how some verbs are used, for the word table (with or without an object)
USES = ["A dog relaxing on the couch.", "A man driving a car.", "A man feeding a horse.", "A dog eating a bone.",
        "A dog eating on the floor.", "A woman filled a cup.", "The boy stands near a sofa."]


@pytest.fixture(scope="module")
def nlp():
    return load_spacy()


@pytest.fixture(scope="module")
def table(nlp):
    labelled = [json.loads(line) for line in (FIXTURES / "negatives_labelled.jsonl").read_text().splitlines()]
    texts = CAPTIONS + USES + [r["caption"] for r in labelled]
    return WordTable.from_tokens(tokens(d) for d in nlp.pipe(texts))


def fill(table, masked, original, lemma, pos, tag, **kw):
    return LexiconFiller(table).fill([FillRequest(masked, original, lemma, pos, tag=tag, **kw)])[0]


def test_relation_swaps_heads_of_noun_phrases_not_parts_of_compounds(nlp):
    assert swap_nouns(tokens(nlp("Two computer monitors next to a keyboard."))) == \
        "A keyboard next to two computer monitors."  # plural and singular: the phrases travel whole
    assert swap_nouns(tokens(nlp("A red fire truck parked outside a station."))) == \
        "A red fire station parked outside a truck."  # "fire" stays: it is part of the first phrase
    # "group of" is a quantity, not an object: the people and the counter are exchanged, whole
    assert swap_nouns(tokens(nlp("A group of people standing around a kitchen counter."))) == \
        "A group of a kitchen counter standing around people."


def test_articles_agree_after_swaps_and_fills(nlp, table):
    assert swap_nouns(tokens(nlp("An apple next to a banana on a table."))) == "A banana next to an apple on a table."
    out = {n.neg_type: n.negative for n in ce_clip_negatives([("s", "An office cubicle with a computer.")], nlp,
                                                              LexiconFiller(table), 0)}
    for text in out.values():
        words = text.lower().split()
        for a, nxt in zip(words, words[1:]):
            if a in ("a", "an"):
                assert a == ("an" if nxt[0] in "aeiou" else "a"), text


def test_inflection_is_kept(table):
    # a VBG by a VBG, a plural by a plural
    verb = fill(table, "A woman <mask> on a toilet.", "sitting", "sit", "VERB", "VBG", usage="none")
    assert verb.endswith("ing") and table.tag[verb] == "VBG"
    noun = fill(table, "Several custom made <mask> on a table.", "cakes", "cake", "NOUN", "NNS")
    assert table.tag[noun] == "NNS"


def test_candidate_lemma_is_compared_not_only_the_original(table):
    req = FillRequest("A bowl <mask> on a table.", "standing", "stand", "VERB", tag="VBG", usage="none")
    assert table.failed_check("stands", req) in ("same_tag", "lemma_differs")
    table.tag["stands"], table.lemma["stands"] = "VBG", "stand"  # even with the right tag, its lemma is "stand"
    try:
        assert table.failed_check("stands", req) == "lemma_differs"
    finally:
        del table.tag["stands"], table.lemma["stands"]


def test_adjectives_only_as_modifiers_and_of_the_same_kind(nlp, table):
    rows = {n.neg_type: n for n in ce_clip_negatives([("s", "A very large dog on the grass.")], nlp, LexiconFiller(table), 0)}
    neg = rows["attribute"].negative.split()
    assert neg[1] == "very" and neg[2] in ("small", "little", "tiny", "mini")  # a size for a size; "very" kept
    assert rows["attribute"].valid == 1
    none = {n.neg_type: n for n in ce_clip_negatives([("s", "The bus is red.")], nlp, LexiconFiller(table), 0)}
    assert none["attribute"].valid == 0  # predicative: not an attribute of a noun phrase


def test_verb_fill_keeps_the_verbs_use(table):
    with_object = fill(table, "A dog <mask> an SUV.", "driving", "drive", "VERB", "VBG", usage="object")
    assert "object" in table.usages[with_object] and with_object != "relaxing"
    without = fill(table, "A dog <mask> on the couch.", "sleeping", "sleep", "VERB", "VBG", usage="none")
    assert "none" in table.usages[without]


def test_near_synonyms_and_words_of_the_caption_are_never_fills(table):
    req = FillRequest("A cat sleeping on a <mask>.", "couch", "couch", "NOUN", tag="NN",
                      avoid=frozenset({"cat", "sleep", "couch"}))
    assert table.failed_check("sofa", req) == "not_near_synonym"
    assert table.failed_check("cat", req) == "not_in_caption"
    person = FillRequest("A <mask> skiing down a slope.", "person", "person", "NOUN", tag="NN")
    assert table.failed_check("man", person) == "not_near_synonym"


def test_hand_labelled_pairs_get_the_expected_verdict(nlp, table):
    labelled = [json.loads(line) for line in (FIXTURES / "negatives_labelled.jsonl").read_text().splitlines()]
    wrong = []
    for r in labelled:
        result = audit(tokens(nlp(r["caption"])), tokens(nlp(r["negative"])), r["type"], table)
        if all(result.values()) != r["good"]:
            wrong.append((r["negative"], r["why"], result))
    assert not wrong, wrong
    assert Counter(r["good"] for r in labelled) == {True: 14, False: 17}


def test_shipped_captions_pass_the_audit_per_type(nlp):
    table = WordTable.from_tokens(tokens(d) for d in nlp.pipe(CAPTIONS))
    parsed = {c: tokens(d) for c, d in zip(CAPTIONS, nlp.pipe(CAPTIONS))}
    rows = [n for n in ce_clip_negatives([(c, c) for c in CAPTIONS], nlp, LexiconFiller(table), 0) if n.valid]
    passed, seen = Counter(), Counter()
    for n, doc in zip(rows, nlp.pipe([n.negative for n in rows])):
        seen[n.neg_type] += 1
        passed[n.neg_type] += all(audit(parsed[n.caption], tokens(doc), n.neg_type, table).values())
    share = {t: passed[t] / seen[t] for t in seen}
    assert all(v >= 0.9 for v in share.values()), share
    # coverage: no lower than the rules before these checks, less the negatives they produced badly
    assert seen["relation"] >= 95 and seen["object"] >= 98 and seen["attribute"] >= 54 and seen["action"] >= 78, seen
