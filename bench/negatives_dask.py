"""Negatives sharded over Dask workers on this machine: throughput with 1 vs 2 workers (a local cluster of
processes), interleaved rounds, medians; then each worker's peak memory on 10k vs 100k captions (flat:
a worker holds one shard at a time). Each run starts from an empty cache in a fresh folder.

  python bench/negatives_dask.py [--captions 20000] [--rounds 3] [--memory 10000,100000] [--out FILE.json]
  python bench/negatives_dask.py --smoke   # seconds: tiny sizes, checks the script runs, measures nothing
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from negatives_throughput import captions  # noqa: E402  (the shapes world's caption sampler)


PHASES = ("engine_start_s", "lexicon_s", "generate_s", "engine_stop_s", "write_s")


def run(n: int, workers: int) -> dict:
    import pandas as pd

    from compclip.config import DaskConfig, load_params
    from compclip.names import CE_CLIP_RULES
    from compclip.text.negatives_table import build_negatives

    with tempfile.TemporaryDirectory() as d:
        manifest = Path(d) / "manifest.parquet"
        pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "caption": captions(n, seed=n), "image_path": "x.jpg",
                      "split": "train", "bbox_x": float("nan")}).to_parquet(manifest, index=False)
        cfg = load_params().negatives.model_copy(update={"out_dir": Path(d) / "out", "scenes": None,
                                                         "rules": list(CE_CLIP_RULES)})
        t = time.perf_counter()
        summary = build_negatives(manifest, cfg, 0, DaskConfig(workers=workers))
        wall = time.perf_counter() - t
    ex = summary["execution"]
    return {"captions": n, "unique": ex["unique_captions_generated"], "workers": workers, "wall_s": wall,
            **{k: ex[k] for k in PHASES}, "peak_rss_mib_per_worker": ex["peak_rss_mib_per_process"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--captions", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory", default="10000,100000")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.captions, a.rounds, a.memory = 60, 1, "30,60"
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(a.rounds):  # interleaved: the machine's noise hits both alike
        for w in (1, 2):
            runs[w].append(run(a.captions, w))
    keys = ("wall_s", *PHASES)
    med = {w: {k: statistics.median(r[k] for r in rs) for k in keys} for w, rs in runs.items()}
    n, unique = a.captions, runs[1][0]["unique"]
    print(f"{n} captions ({unique} unique), CE-CLIP rules, lexicon filler built from all of them, {a.rounds} "
          "interleaved rounds (medians, seconds)")
    print(f"  {'workers':<8}" + "".join(f"{k.removesuffix('_s'):>14}" for k in keys))
    for w in (1, 2):
        print(f"  {w:<8}" + "".join(f"{med[w][k]:14.1f}" for k in keys))
    speedup = {k.removesuffix("_s"): med[1][k] / med[2][k] for k in ("wall_s", "lexicon_s", "generate_s")}
    print(f"  2 vs 1 workers: stage {speedup['wall']:.2f}x ({n / med[2]['wall_s']:.0f} vs {n / med[1]['wall_s']:.0f} "
          f"captions/s), lexicon tagging {speedup['lexicon']:.2f}x, generation {speedup['generate']:.2f}x")

    sizes = [int(x) for x in a.memory.split(",") if x]
    memory = [run(m, 2) for m in sizes]
    for r in memory:
        print(f"  {r['captions']:>7} captions, 2 workers: peak RSS per worker {r['peak_rss_mib_per_worker']} MiB")
    if len(memory) == 2:
        ratio = max(memory[1]["peak_rss_mib_per_worker"]) / max(memory[0]["peak_rss_mib_per_worker"])
        print(f"  per-worker memory ratio {sizes[1]}/{sizes[0]} captions: {ratio:.2f}x")
    if a.out:
        from compclip.provenance import write_result

        write_result(a.out, {"throughput_runs": runs, "medians": med, "speedup_2_vs_1": speedup, "memory": memory},
                     vars(a))


if __name__ == "__main__":
    main()
