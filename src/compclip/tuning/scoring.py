"""The tuning objective's measurements on the validation split, of a model that is still training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from compclip.config import SugarcrepeSource
from compclip.evaluation.encode import EmbeddingCache
from compclip.evaluation.evaluate import score_retrieval, score_sugarcrepe
from compclip.evaluation.sugarcrepe import read_sugarcrepe
from compclip.models.factory import ClipBundle


class ValidationScorer:
    """Compositional accuracy (the mean over the validation SugarCrepe files, every item) and retrieval R@1
    (the mean of image->text and text->image) on the validation split's captions."""

    def __init__(self, val: SugarcrepeSource, val_rows: pd.DataFrame, bundle: ClipBundle,
                 device: torch.device, batch_size: int):
        self.files = read_sugarcrepe(Path(val.data), Path(val.images))
        self.rows, self.bundle, self.device, self.batch_size = val_rows, bundle, device, batch_size
        if not len(val_rows):
            raise ValueError("the manifest has no val rows: retrieval R@1 (tune.max_r1_drop) needs them")

    def __call__(self, model: torch.nn.Module) -> dict:
        was_training = model.training
        bundle = ClipBundle(model, self.bundle.preprocess, self.bundle.tokenizer, self.bundle.name)
        cache = EmbeddingCache(bundle, self.device, self.batch_size)  # puts the model in eval mode
        try:
            # bootstrap CIs are not needed here: 10 resamples keep score_sugarcrepe's cost negligible
            per_file = {k: v["accuracy"] for k, v in score_sugarcrepe(cache, self.files, 10, 0.95, 0).items()}
            retrieval = score_retrieval(cache, self.rows, [1])
        finally:
            model.train(was_training)
        r1 = (retrieval["i2t_R@1"] + retrieval["t2i_R@1"]) / 2
        return {"compositional": float(np.mean(list(per_file.values()))), "files": per_file, "r1": r1,
                "i2t_R@1": retrieval["i2t_R@1"], "t2i_R@1": retrieval["t2i_R@1"],
                "n": {k: len(v) for k, v in self.files.items()},
                "r1_n": {"images": retrieval["images"], "captions": retrieval["captions"]}}
