"""CLEAR GLASS concept hierarchies from captions: four abstraction levels per caption, a DAG, image groups.

Levels, from specific to general (the rule inferrer; an LLM inferrer can replace it):
  level1  the subject noun phrase without its article      "small striped red star" / "young boy"
  level2  its head noun with only the nearest modifier      "red star"               / "young boy"
  level3  the category of the head noun (shipped taxonomy)   "star"                   / "person"
  level4  the supercategory                                  "shape"                  / "person"
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from compclip.text.nlp import DEFAULT_SPACY, SPATIAL_NOUNS, Token, caption_tokens, load_spacy

TAXONOMY = Path(__file__).parent / "lexicon" / "taxonomy.json"
LEVELS = ("level1", "level2", "level3", "level4")
FRAME_NOUNS = frozenset({"picture", "photo", "photograph", "image", "view", "shot", "closeup", "scene"})
Chain = tuple[str, str, str, str]


@lru_cache(maxsize=1)
def taxonomy() -> dict:
    return json.loads(TAXONOMY.read_text())


def category(head: str) -> tuple[str, str]:
    t = taxonomy()
    cat = t["category"].get(head, head)
    return cat, t["supercategory"].get(cat, "object")


def _known(name: str) -> bool:
    t = taxonomy()
    return name in t["category"] or name in t["supercategory"]


def subject_phrase(toks: list[Token]) -> tuple[list[str], str] | None:
    """(modifiers, head) of the first noun phrase. In a run of nouns the last is the head, unless the last
    two form a compound the taxonomy knows ("fire hydrant"); the others are modifiers ("orange arrow")."""
    def is_noun(t: Token) -> bool:
        word = t.text.lower()
        return t.pos in ("NOUN", "PROPN") and t.text.isalpha() and word not in SPATIAL_NOUNS and word not in FRAME_NOUNS

    for i, t in enumerate(toks):
        if not is_noun(t):
            continue
        j = i
        while j + 1 < len(toks) and is_noun(toks[j + 1]):
            j += 1
        k = i
        while k > 0 and (toks[k - 1].pos == "ADJ" or toks[k - 1].tag == "VBN"):
            k -= 1
        words = [x.text.lower() for x in toks[k:j + 1]]
        if j > k and _known(" ".join(words[-2:])):
            return words[:-2], " ".join(words[-2:])
        return words[:-1], toks[j].lemma if toks[j].lemma.isalpha() else words[-1]
    return None


class ConceptInferrer(Protocol):
    name: str

    def infer(self, captions: list[str]) -> list[Chain | None]: ...


class RuleInferrer:
    name = "rules"

    def __init__(self, spacy_model: str = DEFAULT_SPACY):
        load_spacy(spacy_model)  # an uninstalled pipeline fails here
        self.spacy_model = spacy_model

    def infer(self, captions: list[str]) -> list[Chain | None]:
        out = []
        for toks in caption_tokens(captions, self.spacy_model):  # parsed by the negatives stage, most of them
            found = subject_phrase(toks)
            if found is None:
                out.append(None)
                continue
            mods, head = found
            cat, sup = category(head)
            level1 = " ".join(mods + [head])
            level2 = " ".join(mods[-1:] + [head])
            out.append((level1, level2, cat, sup))
        return out


class LLMInferrer:
    """Any OpenAI-compatible chat endpoint: asks for 'specific => ... => general' and parses four levels."""

    name = "llm"

    def __init__(self, client):
        self.client = client  # compclip.text.rewriters.OpenAIChatRewriter

    def infer(self, captions: list[str]) -> list[Chain | None]:
        """A chain per caption; None for a failed request or an answer that is not four levels (the caller
        keeps those captions in unassigned.jsonl)."""
        answers = self.client.complete_many([
            "Name the main object of this caption at four levels of abstraction, from the most specific "
            "(with its attributes) to the most general, separated by ' => ' and nothing else.\n"
            f"Caption: {c}\nLevels:" for c in captions])
        out = []
        for a in answers:
            parts = [p.strip().lower() for p in (a.text or "").split("=>")]
            out.append(tuple(parts) if len(parts) == 4 and all(parts) else None)
        return out
