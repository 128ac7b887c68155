"""Fillers: given a caption with one word masked, propose a replacement word.

Two behind one interface: a masked language model (transformers' fill-mask pipeline; CE-CLIP used
distilroberta-base) and a lexicon of same-POS words from the corpus (no model needed). A filler never
returns the original word or its lemma; when it has nothing else it returns None.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from compclip.errors import UserError

MASK = "<mask>"


@dataclass(frozen=True)
class FillRequest:
    masked: str  # caption with MASK where the word was
    original: str
    lemma: str
    pos: str


def _forbidden(req: FillRequest) -> set[str]:
    return {req.original.lower(), req.lemma.lower()}


class Filler(Protocol):
    name: str

    def fill(self, requests: list[FillRequest]) -> list[str | None]: ...


class LexiconFiller:
    """A same-POS word drawn from the corpus vocabulary; the draw is seeded by the request, so the
    answer for a caption never depends on what else is in the batch (and can be cached)."""

    name = "lexicon"

    def __init__(self, words_by_pos: dict[str, list[str]], seed: int = 0,
                 together: dict[str, set[str]] | None = None):
        self.words = {pos: sorted(set(w.lower() for w in ws)) for pos, ws in words_by_pos.items()}
        self.seed = seed
        # Words seen modifying one noun together ("small red") are of different kinds (size, colour):
        # replacing one by the other would not contradict the caption, so such pairs are avoided.
        self.together = together or {}

    @classmethod
    def from_tokens(cls, token_lists, seed: int = 0, min_count: int = 1,
                    exclude: frozenset[str] = frozenset()) -> LexiconFiller:
        """Each word joins the list of its most frequent POS only, so a tagger slip ("cross" tagged VERB
        once) does not make it a filler for the wrong slot."""
        counts: dict[str, Counter] = {}
        together: dict[str, set[str]] = {}
        for toks in token_lists:
            run: list[str] = []  # the modifiers in front of one noun
            for t in toks:
                if t.text.isalpha() and t.text.lower() not in exclude:
                    counts.setdefault(t.text.lower(), Counter())[t.pos] += 1
                if t.pos == "ADJ" or t.tag == "VBN":
                    run.append(t.text.lower())
                    continue
                for w in run:
                    together.setdefault(w, set()).update(x for x in run if x != w)
                run = []
        words: dict[str, list[str]] = {}
        for word, by_pos in counts.items():
            pos, n = by_pos.most_common(1)[0]
            if n >= min_count:
                words.setdefault(pos, []).append(word)
        return cls(words, seed, together)

    def _same_kind(self, word: str, choices: list[str]) -> list[str]:
        """Words never seen beside `word` but seen beside the same partners: "red" -> other colours,
        since colours all stand next to sizes and never next to each other."""
        partners = self.together.get(word, set())
        return [w for w in choices if w not in partners and self.together.get(w, set()) & partners]

    def fill(self, requests: list[FillRequest]) -> list[str | None]:
        out = []
        for req in requests:
            choices = [w for w in self.words.get(req.pos, []) if w not in _forbidden(req)]
            choices = self._same_kind(req.original.lower(), choices) or choices
            if not choices:
                out.append(None)
                continue
            h = hashlib.sha256(f"{self.seed}|{req.masked}|{req.original}".encode()).digest()
            out.append(choices[int.from_bytes(h[:8], "big") % len(choices)])
        return out


class MaskedLMFiller:
    """transformers fill-mask. CE-CLIP keeps the prediction at rank `rank` (0-based; the released code
    uses 3) so that the filler does not just restore a synonym; invalid candidates are skipped."""

    name = "mlm"

    def __init__(self, model: str, top_k: int = 10, rank: int = 3, batch_size: int = 64, device: str = "cpu"):
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
        self.rank, self.batch_size = rank, batch_size

    def fill(self, requests: list[FillRequest]) -> list[str | None]:
        if not requests:
            return []
        texts = [r.masked.replace(MASK, self.mask_token, 1) for r in requests]
        preds = self.pipe(texts, batch_size=self.batch_size)
        if len(requests) == 1 and preds and isinstance(preds[0], dict):
            preds = [preds]  # the pipeline unwraps a single input
        out = []
        for req, cands in zip(requests, preds):
            words = [c["token_str"].strip() for c in cands]
            valid = [w for w in words if w.isalpha() and w.lower() not in _forbidden(req)]
            out.append(valid[min(self.rank, len(valid) - 1)] if valid else None)
        return out
