"""The whole `compclip negatives` command (CE-CLIP rules, lexicon filler, one process) against spaCy's own
`nlp.pipe` on the same captions with the same pipeline, side by side: interleaved rounds, each in a fresh
process, medians. The command's rate counts everything a user waits for (start-up, the word table, rules,
fills, the quality audit, the cache, the table); the pipe's rate counts the parse alone.

Captions are real-style: the shipped COCO-style captions with nouns, adjectives and verbs recombined from
COCO's vocabulary (seeded), all distinct.

  python bench/negatives_speed.py [--sizes 10000,100000] [--rounds 3,1] [--out FILE.json]
  python bench/negatives_speed.py --smoke   # seconds: 60 captions, 1 round (make test runs it)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "coco_style_captions.txt"
CE_CLIP = ["swap_nouns", "replace_adj", "replace_noun", "replace_verb"]
NOUNS = ("man woman boy girl dog cat horse cow sheep bird elephant bear zebra giraffe bus train truck car "
         "bicycle motorcycle airplane boat bench umbrella backpack suitcase frisbee kite skateboard surfboard "
         "bottle cup fork knife spoon bowl banana apple sandwich orange pizza donut cake chair couch bed table "
         "toilet laptop phone book clock vase sink oven refrigerator street field beach kitchen room counter "
         "window tree building road park grass snow water wave ball bat racket plate").split()
ADJECTIVES = ("red blue green yellow white black brown gray orange pink purple large small big little tall "
              "short old young wooden metal empty crowded open wet dry sunny snowy grassy").split()
VERBS = ("sitting standing walking running riding holding eating playing looking lying flying driving "
         "carrying watching jumping throwing catching crossing").split()
PIPE = """
import json, sys, time
import pandas as pd
from compclip.text.nlp import load_spacy
captions = pd.read_parquet(sys.argv[1])["caption"].tolist()
nlp = load_spacy()
t = time.perf_counter()
for _ in nlp.pipe(captions, batch_size=256):
    pass
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def real_style_captions(n: int, seed: int = 0) -> list[str]:
    from compclip.text.nlp import load_spacy, tokens

    base = [line.strip() for line in FIXTURE.read_text().splitlines() if line.strip()]
    parsed = [tokens(d) for d in load_spacy().pipe(base)]
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    swap = {"NN": NOUNS, "JJ": ADJECTIVES, "VBG": VERBS}
    while len(out) < n:
        words = [(rng.choice(swap[t.tag]) if t.tag in swap and rng.random() < 0.6 else t.text) + t.ws
                 for t in parsed[rng.randrange(len(parsed))]]
        text = "".join(words).strip()
        text = text[:1].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def write_manifest(path: Path, captions: list[str]) -> None:
    import pandas as pd

    pd.DataFrame({"sample_id": [f"coco:{i}" for i in range(len(captions))], "caption": captions,
                  "image_path": [f"images/{i}.jpg" for i in range(len(captions))], "bbox_x": float("nan"),
                  "split": "train"}).to_parquet(path, index=False)


def command_seconds(manifest: Path, out: Path, workers: int) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "compclip.cli", "negatives", "--manifest", str(manifest), "--out", str(out),
                    "--rules", *CE_CLIP, "--filler", "lexicon", "--splits", "train", "--seed", "0",
                    "--workers", str(workers)], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t


def pipe_seconds(manifest: Path) -> float:
    run = subprocess.run([sys.executable, "-c", PIPE, str(manifest)], cwd=REPO, check=True, capture_output=True,
                         text=True)
    return json.loads(run.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--rounds", default="3,1", help="rounds per size")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.sizes, a.rounds = "60", "1"
    sizes = [int(x) for x in a.sizes.split(",")]
    rounds = [int(x) for x in a.rounds.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, r in zip(sizes, rounds):
            manifest = Path(tmp) / f"manifest_{n}.parquet"
            write_manifest(manifest, real_style_captions(n))
            cmd: dict[int, list[float]] = {0: [], 2: []}
            pipe: list[float] = []
            for k in range(r):  # interleaved: the machine's noise hits all alike
                pipe.append(pipe_seconds(manifest))
                for w in cmd:  # one process, then a local Dask cluster of 2 (this machine's cores)
                    cmd[w].append(command_seconds(manifest, Path(tmp) / f"out_{n}_{k}_{w}", w))
            summary = json.loads((Path(tmp) / f"out_{n}_0_0" / "summary.json").read_text())
            p = statistics.median(pipe)
            row = {"captions": n, "rounds": r, "pipe_s": pipe, "pipe_captions_per_s": n / p,
                   "command_s": {f"workers_{w}": v for w, v in cmd.items()},
                   "ratio": {f"workers_{w}": p / statistics.median(v) for w, v in cmd.items()},
                   "coverage": {rule: v["fraction"] for rule, v in summary["coverage"].items()},
                   "quality_all_checks": {rule: q["share_passing"].get("all")
                                          for rule, q in summary["quality"]["rules"].items()}}
            results.append(row)
            print(f"{n} real-style captions, CE-CLIP rules, lexicon filler, {r} interleaved round(s), medians:")
            print(f"  spaCy nlp.pipe alone (one process):      {n / p:8.0f} captions/s")
            for w, v in cmd.items():
                c = statistics.median(v)
                label = "one process" if w == 0 else f"{w} Dask workers"
                print(f"  whole compclip negatives ({label + '):':<16}{n / c:8.0f} captions/s   ratio {p / c:.2f}")
    if a.out:
        from compclip.provenance import write_result

        write_result(a.out, results, vars(a))


if __name__ == "__main__":
    main()
