"""Hard-negative generation: batched (nlp.pipe + one filler call per chunk) vs a per-caption `nlp(text)`
loop, side by side in one run (medians of interleaved rounds); then peak memory of the whole negatives
step on 10k vs 100k captions, each in a fresh process.

  python bench/negatives_throughput.py [--captions 2000] [--rounds 3] [--memory 10000,100000] [--out FILE.json]
  python bench/negatives_throughput.py --smoke   # seconds: 40 captions, 1 round (make test runs it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/tiny_mlm.py: the offline fill-mask model


def captions(n: int, seed: int = 0) -> list[str]:
    from compclip.data.world import SceneSampler, Vocabulary, render_caption

    vocab = Vocabulary(("square", "circle", "triangle", "diamond", "star", "cross", "heart", "arrow"),
                       ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "white"),
                       ("small", "large"), ("solid", "striped", "hollow"))
    s = SceneSampler(vocab, 3, [0.1, 0.5, 0.4], np.random.default_rng(seed))
    keep = {"color": 1.0, "size": 0.5, "pattern": 0.5}
    return [render_caption(s.describe(s.scene(), keep)) for _ in range(n)]


def throughput(n: int, rounds: int, filler_kind: str) -> dict:
    from compclip.text.fillers import LexiconFiller, MaskedLMFiller, WordTable
    from compclip.names import CE_CLIP_RULES
    from compclip.text.negatives import generate
    from compclip.text.nlp import load_spacy, tokens
    from tests.tiny_mlm import build_tiny_mlm

    nlp = load_spacy()
    caps = captions(n)
    if filler_kind == "mlm":  # the transformers fill-mask path, on a tiny local model (no download)
        table = WordTable.from_tokens(tokens(d) for d in nlp.pipe(caps[:500]))
        lex = MaskedLMFiller(build_tiny_mlm(Path(tempfile.mkdtemp()) / "mlm", caps[:500]), table, top_k=10)
    else:
        lex = LexiconFiller.from_tokens(tokens(d) for d in nlp.pipe(caps[:500]))
    samples = [(str(i), c) for i, c in enumerate(caps)]

    class OneDocNlp:  # the per-caption baseline: nlp(text) for each caption, fills one at a time
        def pipe(self, texts, batch_size=1):
            return (nlp(t) for t in texts)

    def batched():
        return list(generate(samples, nlp, lex, 0, CE_CLIP_RULES, batch_size=256))

    def looped():
        out = []
        for s in samples:
            out += generate([s], OneDocNlp(), lex, 0, CE_CLIP_RULES)
        return out

    assert batched() == looped()  # same negatives either way
    tb, tl = [], []
    for _ in range(rounds):
        t = time.perf_counter(); batched(); tb.append(time.perf_counter() - t)
        t = time.perf_counter(); looped(); tl.append(time.perf_counter() - t)
    b, l = statistics.median(tb), statistics.median(tl)
    print(f"{n} captions, CE-CLIP rules, {filler_kind} filler, {rounds} interleaved rounds (medians)")
    print(f"  batched nlp.pipe:       {n / b:8.0f} captions/s")
    print(f"  per-caption nlp(text) and fill: {n / l:8.0f} captions/s")
    print(f"  speed-up:               {l / b:8.2f}x")
    return {"batched_captions_per_s": n / b, "looped_captions_per_s": n / l, "speedup": l / b}


def peak_memory_child(n: int) -> None:
    """Run the whole negatives step on n captions; print peak RSS (MiB) as JSON."""
    import resource

    import pandas as pd

    from compclip.config import load_params
    from compclip.text.negatives_table import build_negatives

    with tempfile.TemporaryDirectory() as d:
        caps = captions(n, seed=n)
        manifest = Path(d) / "manifest.parquet"
        pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "caption": caps, "image_path": "x.jpg", "split": "train",
                      "bbox_x": float("nan")}).to_parquet(manifest, index=False)
        from compclip.names import CE_CLIP_RULES

        cfg = load_params().negatives.model_copy(update={"out_dir": Path(d) / "out", "scenes": None,
                                                         "rules": list(CE_CLIP_RULES)})
        build_negatives(manifest, cfg, 0)
    print(json.dumps({"captions": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--captions", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory", default="10000,100000")
    ap.add_argument("--fillers", default="lexicon,mlm")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, measures nothing")
    a = ap.parse_args()
    if a.child:
        return peak_memory_child(a.child)
    if a.smoke:
        a.captions, a.rounds, a.memory = 40, 1, "50,100"
    results = {"throughput": {kind: throughput(a.captions, a.rounds, kind) for kind in a.fillers.split(",")}}
    sizes = [int(x) for x in a.memory.split(",") if x]
    peaks = {}
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True)
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]
        print(f"  negatives step (CE-CLIP rules) on {n:>7} captions: peak RSS {peaks[n]:7.0f} MiB")
    if len(sizes) == 2:
        print(f"  memory ratio {sizes[1]}/{sizes[0]}: {peaks[sizes[1]] / peaks[sizes[0]]:.2f}x")
    results["peak_rss_mib"] = peaks
    if a.out:
        from compclip.provenance import write_result

        write_result(a.out, results, vars(a))


if __name__ == "__main__":
    main()
