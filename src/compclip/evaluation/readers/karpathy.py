"""Karpathy-split test files (`coco_karpathy_test.json`, `flickr30k_test.json`: a JSON list of
{image, caption: [...]}, as BLIP and ARO publish them) for retrieval and for ARO's COCO-Order and
Flickr30k-Order (REFERENCE §3).

Order: each caption against four perturbations made with spaCy (nouns and adjectives shuffled among
themselves; everything else shuffled; tokens shuffled within trigrams; trigrams shuffled), every option
through ARO's `pre_caption` (lower case, punctuation out, 30 words). The shuffles are seeded per caption, so
the same file gives the same test on every run. ARO tokenizes trigrams with nltk; here spaCy's tokens are
used for all four (nltk is not a dependency). A perturbation identical to the caption (or to another
option) is not a negative: it is left out of that item's options and counted (`options_dropped`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from compclip.data.records import expect, load_json
from compclip.evaluation.items import Choice, ImageRef, Loaded
from compclip.evaluation.readers.common import check_image, data_files, file_keys
from compclip.hashing import stable_int

NOUN_TAGS = {"NN", "NNS", "NNP", "NNPS"}
ADJ_TAGS = {"JJ", "JJR", "JJS"}
MAX_WORDS = 30  # ARO's pre_caption(max_words=30) for the Order sets


@dataclass(frozen=True)
class RetrievalImage:
    file: str
    key: str
    image: ImageRef
    captions: tuple[str, ...]


def read_karpathy(data: Path, images: Path) -> Loaded:
    """Loaded.items are RetrievalImage: an image and its captions."""
    loaded = Loaded("retrieval")
    paths = data_files(data, "*.json", "a Karpathy test JSON (coco_karpathy_test.json, flickr30k_test.json)")
    for key, path in file_keys(paths, data).items():
        loaded.files[key] = str(path)
        for i, rec in enumerate(expect(load_json(path), list, path, "a JSON list of {image, caption}")):
            if not isinstance(rec, dict):
                loaded.skip(key, i, "not_an_object", type(rec).__name__)
                continue
            captions = rec.get("caption")
            captions = [captions] if isinstance(captions, str) else captions
            if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
                loaded.skip(key, i, "missing_key", "needs caption (a string or a list of strings)")
                continue
            image = check_image(loaded, key, i, images, rec.get("image"))
            if image is not None:
                loaded.items.append(RetrievalImage(key, str(i), image, tuple(captions)))
    return loaded


def pre_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


def _shuffle_where(words: list[str], where: list[bool], rng: random.Random) -> list[str]:
    picked = [w for w, keep in zip(words, where) if keep]
    rng.shuffle(picked)
    it = iter(picked)
    return [next(it) if keep else w for w, keep in zip(words, where)]


def perturbations(words: list[str], tags: list[str], rng: random.Random) -> list[str]:
    nouns = [t in NOUN_TAGS for t in tags]
    adjs = [t in ADJ_TAGS for t in tags]
    nouns_adj = _shuffle_where(_shuffle_where(words, nouns, rng), adjs, rng)
    others = _shuffle_where(words, [not (n or a) for n, a in zip(nouns, adjs)], rng)
    trigrams = [words[i:i + 3] for i in range(0, len(words), 3)]
    within = []
    for tri in trigrams:
        tri = list(tri)
        rng.shuffle(tri)
        within += tri
    order = list(trigrams)
    rng.shuffle(order)
    return [" ".join(nouns_adj), " ".join(others), " ".join(within), " ".join(w for t in order for w in t)]


def read_order(data: Path, images: Path, seed: int = 0, spacy_model: str | None = None) -> Loaded:
    """COCO-Order / Flickr30k-Order from a Karpathy test file: one item per caption, true caption first."""
    from compclip.text.nlp import DEFAULT_SPACY, word_tags

    source = read_karpathy(data, images)
    loaded = Loaded("order", skipped=source.skipped, files=source.files)
    flat = [(im, j, c) for im in source.items for j, c in enumerate(im.captions)]
    dropped = 0
    for (im, j, caption), (words, tags) in zip(flat, word_tags([c for _, _, c in flat], spacy_model or DEFAULT_SPACY)):
        key = f"{im.key}/{j}"
        rng = random.Random(stable_int(f"{seed}|order|{im.file}|{key}"))
        original = pre_caption(caption)
        options = [pre_caption(p) for p in perturbations(words, tags, rng)]
        kept = [o for o in dict.fromkeys(options) if o != original]
        dropped += len(options) - len(kept)
        if not kept:
            loaded.skip(im.file, key, "no_distinct_perturbation", f"every perturbation of {caption!r} equals it")
            continue
        loaded.items.append(Choice(im.file, key, im.image, (original, *kept)))
    loaded.notes = {"options_dropped": dropped}
    return loaded
