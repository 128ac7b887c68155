"""What each table must satisfy, as Great Expectations suites.

Checks GX has no built-in for (two columns differ, a swap is a permutation, an id exists in another
table) become boolean columns derived here, each expected to be all True.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import great_expectations as gx
import pandas as pd

from compclip.names import NEGATIVE_RULES, PLACEHOLDER, POSITIVE_RULES, SCENE_GRAPH_RULES

NEGATIVE_TYPES = NEGATIVE_RULES | SCENE_GRAPH_RULES  # rule -> neg_type
SWAP_RULES = {r for r in NEGATIVE_RULES if "swap" in r or r.startswith("shuffle")}


@dataclass
class Suite:
    name: str
    frame: pd.DataFrame
    expectations: list = field(default_factory=list)
    show: tuple[str, ...] = ("sample_id", "caption")  # columns printed for failing rows


def _words(s: pd.Series) -> pd.Series:
    return s.fillna("").str.split().str.len()


def _ids(frame: pd.DataFrame, manifest_ids: set[str]) -> pd.Series:
    return frame["sample_id"].isin(manifest_ids)


def manifest_suite(m: pd.DataFrame, max_words: int) -> Suite:
    f = m.assign(caption_words=_words(m["caption"]),
                 image_in_one_split=m.groupby("image_path")["split"].transform("nunique") == 1)
    E = gx.expectations
    return Suite("manifest", f, [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("sample_id", "source", "image_path", "caption", "split")),
        E.ExpectColumnValuesToBeUnique(column="sample_id"),
        E.ExpectColumnValuesToBeInSet(column="source", value_set=["coco", "vg", "cc3m"]),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
        E.ExpectColumnValuesToBeBetween(column="caption_words", min_value=1, max_value=max_words),
        E.ExpectColumnValuesToBeInSet(column="image_in_one_split", value_set=[True]),
    ])


def negatives_suite(n: pd.DataFrame, manifest_ids: set[str], max_words: int) -> Suite:
    valid = n["valid"] == 1
    differs = (n["negative"].str.lower() != n["caption"].str.lower()) | ~valid
    placeholder_ok = valid | (n["negative"] == PLACEHOLDER)
    swap = valid & n["rule"].isin(SWAP_RULES)
    # a swap is a permutation of the caption's words, up to a/an, which the rules make agree with the next word
    tokens = lambda s: (s.str.lower().str.replace(r"([^\w\s])", r" \1 ", regex=True)  # noqa: E731
                        .str.replace(r"\ban\b", "a", regex=True).str.split().map(sorted))
    permutation = pd.Series(True, index=n.index)
    permutation[swap] = tokens(n.loc[swap, "negative"]) == tokens(n.loc[swap, "caption"])
    f = n.assign(differs_from_caption=differs, placeholder_when_invalid=placeholder_ok, swap_is_permutation=permutation,
                 sample_in_manifest=_ids(n, manifest_ids), negative_words=_words(n["negative"]))
    E = gx.expectations
    return Suite("negatives", f, [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("sample_id", "caption", "negative", "neg_type", "rule")),
        E.ExpectColumnValuesToBeInSet(column="rule", value_set=sorted(NEGATIVE_TYPES)),
        E.ExpectColumnValuesToBeInSet(column="neg_type", value_set=sorted(set(NEGATIVE_TYPES.values()))),
        E.ExpectColumnValuesToBeInSet(column="valid", value_set=[0, 1]),
        E.ExpectColumnValuesToBeBetween(column="negative_words", min_value=1, max_value=max_words),
        *(E.ExpectColumnValuesToBeInSet(column=c, value_set=[True]) for c in
          ("differs_from_caption", "placeholder_when_invalid", "swap_is_permutation", "sample_in_manifest")),
    ], show=("sample_id", "rule", "caption", "negative"))


def positives_suite(p: pd.DataFrame, manifest_ids: set[str], negatives: pd.DataFrame, min_similarity: float,
                    max_words: int) -> Suite:
    neg_pairs = set(zip(negatives.loc[negatives["valid"] == 1, "sample_id"],
                        negatives.loc[negatives["valid"] == 1, "negative"].str.lower()))
    not_negative = [(s, t.lower()) not in neg_pairs for s, t in zip(p["sample_id"], p["positive"])]
    f = p.assign(differs_from_caption=p["positive"].str.lower() != p["caption"].str.lower(),
                 not_a_negative=not_negative, sample_in_manifest=_ids(p, manifest_ids),
                 positive_words=_words(p["positive"]))
    E = gx.expectations
    return Suite("positives", f, [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("sample_id", "caption", "positive", "rule", "similarity")),
        E.ExpectColumnValuesToBeInSet(column="rule", value_set=sorted(POSITIVE_RULES) +
                                      ["llm_openai_swap", "llm_openai_replace", "llm_transformers_swap",
                                       "llm_transformers_replace"]),
        E.ExpectColumnValuesToBeBetween(column="similarity", min_value=min_similarity, max_value=1.0001),
        E.ExpectColumnValuesToBeBetween(column="positive_words", min_value=1, max_value=max_words),
        *(E.ExpectColumnValuesToBeInSet(column=c, value_set=[True]) for c in
          ("differs_from_caption", "not_a_negative", "sample_in_manifest")),
    ], show=("sample_id", "rule", "caption", "positive"))


def groups_suite(groups: pd.DataFrame, min_size: int) -> Suite:
    E = gx.expectations
    return Suite("concept_groups", groups, [
        E.ExpectColumnValuesToNotBeNull(column="concept"),
        E.ExpectColumnValuesToBeUnique(column="concept"),
        E.ExpectColumnValuesToBeBetween(column="images", min_value=min_size),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "test"]),
    ], show=("concept", "images"))


def memberships_suite(members: pd.DataFrame, manifest_images: set[str]) -> Suite:
    f = members.assign(image_in_manifest=members["image_path"].isin(manifest_images),
                       concept_in_one_split=members.groupby("level1")["split"].transform("nunique") == 1)
    E = gx.expectations
    return Suite("concept_memberships", f, [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("image_path", "level1", "level2", "level3", "level4")),
        E.ExpectColumnValuesToBeUnique(column="image_path"),
        *(E.ExpectColumnValuesToBeInSet(column=c, value_set=[True]) for c in
          ("image_in_manifest", "concept_in_one_split")),
    ], show=("image_path", "level1"))


def concept_negatives_suite(pairs: pd.DataFrame, threshold: float) -> Suite:
    f = pairs.assign(not_itself=pairs["concept"] != pairs["negative"])
    E = gx.expectations
    return Suite("concept_hard_negatives", f, [
        E.ExpectColumnValuesToBeInSet(column="level", value_set=["level1", "level2", "level3", "level4"]),
        E.ExpectColumnValuesToBeBetween(column="similarity", min_value=threshold, max_value=1.0001),
        E.ExpectColumnValuesToBeInSet(column="not_itself", value_set=[True]),
    ], show=("level", "concept", "negative"))
