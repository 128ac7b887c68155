"""Who scores the texts: the model (image against texts, through the embedding cache) or a blind baseline
that never sees the image (text_only.py). Both return per-item score rows in the same shape, so the same
metrics code summarizes them.

A row: {file, key, group, subset, scores: [...]} plus, for the model, `over_context` (a text of the item
is longer than the model's context and was cut) and `tied_by_cut` (the cut made the true text identical to
another option: the model can only tie, and a tie is wrong).
"""

from __future__ import annotations

import torch

from compclip.evaluation.encode import EmbeddingCache
from compclip.evaluation.items import Choice, Loaded
from compclip.text.context import over_context, same_after_cut


def score_row(item, scores, **extra) -> dict:
    return {"file": item.file, "key": item.key, "group": getattr(item, "group", ""),
            "subset": getattr(item, "subset", ""), "scores": [float(s) for s in scores], **extra}


class ModelScorer:
    """Scores with an open_clip model; images are encoded once per unique (path, box), texts once each."""

    blind = False

    def __init__(self, cache: EmbeddingCache, name: str):
        self.cache, self.name = cache, name

    def _usable(self, loaded: Loaded, items: list, images) -> list:
        ok = self.cache.usable(images)
        for item, good, image in zip(items, ok, images):
            if not good:
                loaded.skip(item.file, item.key, self.cache.failed[image], str(image))
        return [it for it, good in zip(items, ok) if good]

    def choices(self, loaded: Loaded, items: list[Choice]) -> list[dict]:
        items = self._usable(loaded, items, [it.image for it in items])
        if not items:
            return []
        img = self.cache.image_matrix([it.image for it in items])
        texts = list(dict.fromkeys(t for it in items for t in it.texts))
        emb = self.cache.text_matrix(texts)
        row_of = {t: i for i, t in enumerate(texts)}
        tok = self.cache.bundle.tokenizer
        over = dict(zip(texts, over_context(tok, texts)))
        # option k of every item at once, as elementwise products summed per row: the same arithmetic as
        # score_sugarcrepe, so both give the same decisions even on near-ties
        width = max(len(it.texts) for it in items)
        scores = torch.full((len(items), width), float("nan"))
        for k in range(width):
            has = [i for i, it in enumerate(items) if len(it.texts) > k]
            rows_k = emb[[row_of[items[i].texts[k]] for i in has]]
            scores[has, k] = (img[has] * rows_k).sum(1)
        rows = []
        for i, it in enumerate(items):
            tied = any(same_after_cut(tok, [it.texts[0]], [t])[0] for t in it.texts[1:]) \
                if any(over[t] for t in it.texts) else False
            rows.append(score_row(it, scores[i, :len(it.texts)].numpy(),
                                  over_context=any(over[t] for t in it.texts), tied_by_cut=bool(tied)))
        return rows

    @torch.no_grad()
    def retrieval(self, loaded: Loaded) -> list[dict]:
        """Per caption its image's rank among all images (t2i); per image its best caption's rank (i2t)."""
        items = self._usable(loaded, loaded.items, [it.image for it in loaded.items])
        if not items:
            return []
        img = self.cache.image_matrix([it.image for it in items])
        captions = [c for it in items for c in it.captions]
        owner = torch.tensor([i for i, it in enumerate(items) for _ in it.captions])
        sims = img @ self.cache.text_matrix(captions).T  # (images, captions)
        true = sims[owner, torch.arange(len(captions))]
        t2i = (sims > true[None, :]).sum(0) + 1
        own = owner[None, :] == torch.arange(len(items))[:, None]
        best = sims.masked_fill(~own, float("-inf")).max(1).values
        i2t = (sims > best[:, None]).sum(1) + 1
        rows = [{"file": it.file, "key": it.key, "direction": "i2t", "rank": int(r)} for it, r in zip(items, i2t)]
        rows += [{"file": items[int(o)].file, "key": f"{items[int(o)].key}/{j}", "direction": "t2i", "rank": int(r)}
                 for j, (o, r) in enumerate(zip(owner, t2i))]
        return rows

    @torch.no_grad()
    def zeroshot(self, loaded: Loaded) -> list[dict]:
        items = self._usable(loaded, loaded.items, [it.image for it in loaded.items])
        if not items:
            return []
        prompts = [t.format(c) for c in loaded.classnames for t in loaded.templates]
        emb = self.cache.text_matrix(prompts).reshape(len(loaded.classnames), len(loaded.templates), -1).mean(1)
        classes = emb / emb.norm(dim=-1, keepdim=True)
        scores = (self.cache.image_matrix([it.image for it in items]) @ classes.T).numpy()
        return [{"file": it.file, "key": it.key, "label": it.label, "scores": [float(s) for s in row]}
                for it, row in zip(items, scores)]

    def abstraction(self, loaded: Loaded) -> list[dict]:
        """Per item and level: [s(image, own text), s(image, distractor's text), s(distractor image, own text)]."""
        usable = self.cache.usable([it.image for it in loaded.items]) & \
            self.cache.usable([it.distractor for it in loaded.items])
        items = []
        for it, ok in zip(loaded.items, usable):
            if ok:
                items.append(it)
            else:
                bad = it.image if it.image in self.cache.failed else it.distractor
                loaded.skip(it.file, it.key, self.cache.failed[bad], str(bad))
        if not items:
            return []
        img = self.cache.image_matrix([it.image for it in items])
        dis = self.cache.image_matrix([it.distractor for it in items])
        own = self.cache.text_matrix([it.own for it in items])
        other = self.cache.text_matrix([it.other for it in items])
        scores = torch.stack([(img * own).sum(1), (img * other).sum(1), (dis * own).sum(1)], dim=1).numpy()
        return [score_row(it, s) for it, s in zip(items, scores)]

