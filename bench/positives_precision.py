"""The positives stage's MiniLM filter in fp32 and in bf16 (positives.precision), side by side in one run.

Speed: the same --texts distinct texts of the positives table (captions and their candidates), encoded in
each precision in alternating order, --rounds rounds, medians. Agreement: every candidate the stage scored
(kept ones from positives.parquet, rejected ones from positives_rejected.jsonl, equal-to-a-negative ones
included), its cosine with its caption in both precisions: the largest difference, and how many keep/reject
decisions at positives.min_similarity come out differently.

  python bench/positives_precision.py [--texts N] [--rounds N] [--out FILE.json]   # after the positives stage
  python bench/positives_precision.py --smoke                                       # a few made-up pairs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from compclip.config import load_params  # noqa: E402
from compclip.provenance import write_result  # noqa: E402
from compclip.text.positives_table import SentenceEmbeddings, cosine  # noqa: E402

SMOKE = [("a red square to the left of a blue circle", "a blue circle to the right of a red square"),
         ("two large striped hearts", "two big striped hearts"),
         ("a small green star above a hollow cross", "a hollow cross below a small green star")]


def scored_pairs(out_dir: Path) -> list[tuple[str, str]]:
    import pandas as pd

    for name in ("positives.parquet", "positives_rejected.jsonl"):
        if not (out_dir / name).is_file():
            raise SystemExit(f"{out_dir / name}: missing; run the positives stage first (dvc repro positives)")
    kept = pd.read_parquet(out_dir / "positives.parquet", columns=["caption", "positive"]).drop_duplicates()
    pairs = list(zip(kept["caption"], kept["positive"]))
    for line in (out_dir / "positives_rejected.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("positive"):  # a failed rewriter request has none
            pairs.append((rec["caption"], rec["positive"]))
    return list(dict.fromkeys(pairs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=4096, help="distinct texts timed per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="a few made-up pairs, one round")
    a = ap.parse_args()
    p = load_params()
    if a.smoke:
        pairs, a.rounds = SMOKE, 1
    else:
        pairs = scored_pairs(Path(p.positives.out_dir))
    texts = list(dict.fromkeys(t for pair in pairs for t in pair))[:a.texts]

    SentenceEmbeddings(None)(texts[:8])  # the model loaded and warm before any timing
    seconds = {"fp32": [], "bf16": []}
    for r in range(a.rounds):
        for precision in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            embed = SentenceEmbeddings(None, precision=precision)  # no disk cache: every text encoded
            start = time.perf_counter()
            embed(texts)
            seconds[precision].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in seconds.items()}

    captions, positives = [c for c, _ in pairs], [q for _, q in pairs]
    cos = {k: cosine(captions, positives, SentenceEmbeddings(None, precision=k)) for k in ("fp32", "bf16")}
    diff = np.abs(cos["bf16"] - cos["fp32"])
    threshold = p.positives.min_similarity
    flips = int(((cos["fp32"] >= threshold) != (cos["bf16"] >= threshold)).sum())
    results = {"texts_timed": len(texts), "rounds": a.rounds, "seconds": seconds,
               "median_s": {k: round(v, 3) for k, v in med.items()}, "speedup_bf16": round(med["fp32"] / med["bf16"], 3),
               "pairs": len(pairs), "max_abs_cosine_diff": float(diff.max()), "median_abs_cosine_diff": float(np.median(diff)),
               "min_similarity": threshold, "decisions_changed": flips,
               "kept_fp32": int((cos["fp32"] >= threshold).sum()), "kept_bf16": int((cos["bf16"] >= threshold).sum())}
    print(f"{len(texts)} texts: fp32 {med['fp32']:.2f} s, bf16 {med['bf16']:.2f} s (median of {a.rounds}): "
          f"bf16 {results['speedup_bf16']:.2f}x")
    print(f"{len(pairs)} scored pairs: max |cos bf16 - cos fp32| {diff.max():.4f}, median {np.median(diff):.5f}; "
          f"decisions at {threshold} changed: {flips} (kept fp32 {results['kept_fp32']}, bf16 {results['kept_bf16']})")
    if a.out:
        write_result(a.out, results, params={**vars(a), "min_similarity": threshold})


if __name__ == "__main__":
    main()
