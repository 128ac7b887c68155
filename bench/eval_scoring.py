"""The scoring engine against the naive loop, on a SugarCrepe-format set, side by side in one run.

- per_pair: what most benchmark scripts do: for every item, encode its image and its two texts (batch of
  one image, two texts), compare.
- encode_once: compclip's engine without the disk store: each unique image and text encoded once, in
  batches; every score a dot product.
- cold / warm: the engine with the disk store, first run (empty store: encodes and writes) and a re-run
  (same model, same files: reads every embedding back).

Rounds are interleaved (per_pair, encode_once, cold, warm), reported as medians; goals: per_pair /
encode_once >= 3 and cold / warm >= 3. Every variant's accuracies are checked equal (same decisions).

  python bench/eval_scoring.py [--data data/synth/sugarcrepe --images data/synth/coco/test] [--items 1500]
      [--model compclip-tiny-rn] [--rounds 3] [--out bench/results/eval_scoring_cpu.json]
  python bench/eval_scoring.py --smoke   # a tiny generated set and the micro model, 1 round
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compclip.data.images import open_image
from compclip.evaluation.encode import EmbeddingCache
from compclip.evaluation.scorers import ModelScorer
from compclip.evaluation.sugarcrepe import read_sugarcrepe_items
from compclip.models.factory import create
from compclip.provenance import write_result


def tiny_set(folder: Path, n: int = 24) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    items = {}
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "images" / f"{i % 8}.jpg")
        items[str(i)] = {"filename": f"{i % 8}.jpg", "caption": f"a red circle number {i}",
                         "negative_caption": f"a blue circle number {i}"}
    (folder / "swap_att.json").write_text(json.dumps(items))
    return folder, folder / "images"


@torch.no_grad()
def per_pair(bundle, items) -> np.ndarray:
    out = []
    for it in items:
        img = bundle.model.encode_image(bundle.preprocess(open_image(it.image.path))[None], normalize=True)
        txt = bundle.model.encode_text(bundle.tokenizer(list(it.texts)), normalize=True)
        s = (txt @ img[0]).numpy()
        out.append(s[0] > s[1])
    return np.array(out)


def engine(bundle, loaded, items, store) -> np.ndarray:
    rows = ModelScorer(EmbeddingCache(bundle, "cpu", 256, store), "bench").choices(loaded, items)
    return np.array([r["scores"][0] > r["scores"][1] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="data/synth/sugarcrepe")
    ap.add_argument("--images", default="data/synth/coco/test")
    ap.add_argument("--items", type=int, default=1500, help="the first N items (per_pair is slow)")
    ap.add_argument("--model", default="compclip-tiny-rn", help="an open_clip model name (random init: speed only)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        if a.smoke:
            a.data, a.images = map(str, tiny_set(tmp / "set"))
            a.model, a.rounds, a.items = "compclip-micro", 1, 24
        torch.manual_seed(0)
        bundle = create(a.model)
        bundle.model.eval()
        loaded = read_sugarcrepe_items(Path(a.data), Path(a.images))
        items = loaded.items[:a.items]
        times = {k: [] for k in ("per_pair", "encode_once", "cold", "warm")}
        answers = {}
        for r in range(a.rounds):
            store = tmp / f"store{r}"
            for name, fn in (("per_pair", lambda: per_pair(bundle, items)),
                             ("encode_once", lambda: engine(bundle, loaded, items, None)),
                             ("cold", lambda: engine(bundle, loaded, items, store)),
                             ("warm", lambda: engine(bundle, loaded, items, store))):
                t = time.perf_counter()
                answers[name] = fn()
                times[name].append(time.perf_counter() - t)
        agree = {k: float(np.mean(v == answers["per_pair"])) for k, v in answers.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        results = {"items": len(items), "unique_images": len({it.image for it in items}),
                   "unique_texts": len({t for it in items for t in it.texts}), "median_seconds": med,
                   "seconds": times, "per_pair_over_encode_once": med["per_pair"] / med["encode_once"],
                   "cold_over_warm": med["cold"] / med["warm"], "decisions_equal_to_per_pair": agree}
        print(json.dumps(results, indent=1))
        if a.out:
            write_result(a.out, results, vars(a))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
