"""Blind baselines: score each option's text without looking at the image. Where a blind score picks the
true caption far above chance, the benchmark can be solved from the text alone (negatives that are
ungrammatical or implausible), the flaw SugarCrepe was built to expose in ARO and CREPE (REFERENCE §2).

- `ngram`: the log-likelihood of the text under a word bigram model fitted on a corpus (in the pipeline,
  the training captions: "does this read like a caption the model was trained on?"). Interpolated with
  the add-one unigram model so unseen words and pairs keep some probability.
- `mlm:<model>`: the pseudo-log-likelihood under a masked language model (Salazar et al. 2020): each token
  masked in turn, the log-probability of the true token summed. Any Hugging Face fill-mask model or local
  folder, e.g. `mlm:distilroberta-base`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from compclip.errors import UserError
from compclip.evaluation.items import Loaded
from compclip.evaluation.scorers import score_row

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
BOS, EOS = "<s>", "</s>"


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class BigramModel:
    """log P(text) = sum over words (and the end) of log(λ·P_ml(w | prev) + (1 − λ)·P_add1(w))."""

    def __init__(self, corpus: Iterable[str], interpolation: float = 0.8):
        self.lam = interpolation
        self.unigrams, self.bigrams, self.context = Counter(), Counter(), Counter()
        for text in corpus:
            seq = [BOS, *words(text), EOS]
            self.unigrams.update(seq[1:])
            self.bigrams.update(zip(seq, seq[1:]))
            self.context.update(seq[:-1])
        if not self.unigrams:
            raise UserError("the blind baseline's corpus has no text")
        self.total, self.vocab = sum(self.unigrams.values()), len(self.unigrams) + 1  # + unseen

    def __call__(self, text: str) -> float:
        seq = [BOS, *words(text), EOS]
        logp = 0.0
        for prev, w in zip(seq, seq[1:]):
            uni = (self.unigrams[w] + 1) / (self.total + self.vocab)
            ml = self.bigrams[(prev, w)] / self.context[prev] if self.context[prev] else 0.0
            logp += math.log(self.lam * ml + (1 - self.lam) * uni)
        return logp


class MaskedLMModel:
    """Pseudo-log-likelihood under a fill-mask model, one masked copy of the text per token, batched."""

    def __init__(self, name: str, batch_size: int = 64):
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
            self.model = AutoModelForMaskedLM.from_pretrained(name).eval()
        except OSError as e:
            raise UserError(f"blind baseline mlm:{name}: cannot load it ({e}); give a local folder or a model "
                            "in the Hugging Face cache") from None
        self.batch_size = batch_size

    def __call__(self, text: str) -> float:
        import torch

        ids = self.tokenizer(text, return_tensors="pt", truncation=True)["input_ids"][0]
        positions = [i for i, t in enumerate(ids.tolist()) if t not in self.tokenizer.all_special_ids]
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(positions), self.batch_size):
                chunk = positions[s:s + self.batch_size]
                batch = ids.repeat(len(chunk), 1)
                batch[torch.arange(len(chunk)), chunk] = self.tokenizer.mask_token_id
                logits = self.model(input_ids=batch).logits[torch.arange(len(chunk)), chunk]
                total += float(logits.log_softmax(-1)[torch.arange(len(chunk)), ids[chunk]].sum())
        return total


class BlindScorer:
    """The scorer interface of ModelScorer, for benchmarks whose items are texts to choose between."""

    blind = True

    def __init__(self, text_score, name: str):
        self.text_score, self.name = text_score, name
        self._memo: dict[str, float] = {}

    def score(self, text: str) -> float:
        if text not in self._memo:
            self._memo[text] = self.text_score(text)
        return self._memo[text]

    def choices(self, loaded: Loaded, items: list) -> list[dict]:
        return [score_row(it, np.array([self.score(t) for t in it.texts])) for it in items]

    def abstraction(self, loaded: Loaded) -> list[dict]:
        # blind to the image, the distractor image's score is the same text's: it can only tie
        return [score_row(it, [self.score(it.own), self.score(it.other), self.score(it.own)]) for it in loaded.items]


def blind_scorer(spec: str, corpus: Iterable[str] | None = None) -> BlindScorer:
    """`ngram` (needs a corpus) or `mlm:<model>`."""
    if spec == "ngram":
        if corpus is None:
            raise UserError("blind baseline ngram needs a corpus of captions (--blind-corpus FILE, one per line)")
        return BlindScorer(BigramModel(corpus), "blind:ngram")
    if spec.startswith("mlm:") and len(spec) > 4:
        return BlindScorer(MaskedLMModel(spec[4:]), f"blind:{spec}")
    raise UserError(f"blind baseline {spec!r}: use `ngram` or `mlm:<model name or folder>`")
