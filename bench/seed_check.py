"""How much the demo's comparison rests on its fine-tuning seed.

clip, negclip and ce_clip fine-tune as the demo's train@ stages do (params.yaml with each method's
method_overrides, from the pretrain stage's CLIP, on the negatives stage's table) once per --seeds value,
with MLflow off. params' `seed` also makes the world, so only the fine-tuning sees the other seed: its batch
order and its random state; the data, the starting model and the test items stay the demo's. Each model is
scored on SugarCrepe's files (all items, seen and held-out combinations, n and 95% CIs) and, per seed, the
demo's criterion is checked: negclip and ce_clip more than 5 points above clip on swap_obj and swap_att, seen
and all items, with the intervals apart. The seed the demo ran with must reproduce the demo's own scores
(`matches_demo`, where reports/evaluate holds them). Written after every model: a run cut short keeps what
it finished, and a rerun resumes (finished models are read back, not trained again).

  python bench/seed_check.py --seeds 42 1 2 --work /tmp/seeds --out bench/results/seed_check_cpu.json
                                   # after `make demo` (minutes per seed)
  python bench/seed_check.py --smoke  # the tiny world, a few steps: checks it runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from combination_negatives import FILES, fmt, scores_of, smoke_params  # noqa: E402

from compclip.config import Params, load_params  # noqa: E402
from compclip.provenance import write_result  # noqa: E402
from compclip.training.trainer import train  # noqa: E402

METHODS = ("clip", "negclip", "ce_clip")
CRITERION = [(m, f, part) for m in ("negclip", "ce_clip") for f in ("swap_obj", "swap_att") for part in ("seen", "all")]
MARGIN = 0.05


def seeded(p: Params, method: str, seed: int, work: Path, steps: int | None) -> Params:
    """The method's params as its train@ stage has them, with the fine-tuning's seed, into work/seed_<seed>."""
    q = p.model_copy(update={"seed": seed}).for_method(method)
    tr = {"out_dir": work / f"seed_{seed}", "resume": "latest", **({"max_steps": steps} if steps else {})}
    return q.model_copy(update={"train": q.train.model_copy(update=tr),
                                "mlflow": q.mlflow.model_copy(update={"enabled": False})})


def criterion(scores: dict) -> dict:
    """Each of the eight cells: points above clip, whether the 95% intervals are apart, and both together."""
    out = {}
    for m, f, part in CRITERION:
        c, b = scores[m][f][part], scores["clip"][f][part]
        apart = c["ci"][0] > b["ci"][1]
        out[f"{m}/{f}/{part}"] = {"points": round(100 * (c["accuracy"] - b["accuracy"]), 1), "cis_apart": apart,
                                  "met": c["accuracy"] - b["accuracy"] > MARGIN and apart}
    return out


def demo_scores(p: Params, method: str) -> dict | None:
    path = Path(p.evaluate.out_dir) / method / "metrics.json"
    if not path.is_file():
        return None
    sc = json.loads(path.read_text())["sugarcrepe"]
    return {f: sc[f]["accuracy"] for f in FILES if f in sc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--steps", type=int, help="fine-tuning steps (default: each method's, as the demo trains it)")
    ap.add_argument("--work", help="models go here (default: a temporary folder)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="the tiny world, 3 steps, seeds 0 and 1")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="seed_check_"))
    if a.smoke:
        from compclip.text.negatives_table import build_negatives

        p = smoke_params(work / "world")
        p = p.model_copy(update={"negatives": p.negatives.model_copy(update={"out_dir": work / "negatives"})})
        build_negatives(Path(p.ingest.out_dir) / "manifest.parquet", p.negatives, p.seed)
        a.seeds, a.steps = [0, 1], 3
    else:
        p = load_params()
    results = {"demo_seed": p.seed, "seeds": {}, "methods": list(METHODS), "criterion": "negclip and ce_clip "
               f"more than {100 * MARGIN:.0f} points above clip, 95% CIs apart: swap_obj, swap_att; seen, all items"}

    def save() -> None:
        if a.out:
            write_result(a.out, results, params={**vars(a), "work": str(work)})

    for seed in a.seeds:
        entry = results["seeds"].setdefault(str(seed), {"scores": {}, "train_seconds": {}, "steps": {}})
        for method in METHODS:
            q = seeded(p, method, seed, work, a.steps)
            start = time.perf_counter()
            summary = train(q, method)
            entry["train_seconds"][method] = round(time.perf_counter() - start, 1)
            entry["steps"][method] = summary["steps"]
            # scored as the demo scores (its bootstrap seed): only the training differs between seeds
            entry["scores"][method] = scores_of(summary["model"], q.model_copy(update={"seed": p.seed}), a.device)
            if seed == p.seed and not a.steps and (demo := demo_scores(p, method)) is not None:
                entry.setdefault("matches_demo", {})[method] = all(
                    abs(entry["scores"][method][f]["all"]["accuracy"] - acc) < 1e-12 for f, acc in demo.items())
            save()
        entry["criterion"] = criterion(entry["scores"])
        entry["cells_met"] = sum(c["met"] for c in entry["criterion"].values())
        save()
        print(f"seed {seed}: {entry['cells_met']} of {len(CRITERION)} cells"
              + (f" (reproduces the demo: {entry['matches_demo']})" if "matches_demo" in entry else ""))
        for m in METHODS:
            for f in ("swap_obj", "swap_att"):
                print(f"  {m:8s} {f:9s} seen {fmt(entry['scores'][m][f]['seen'])}  all {fmt(entry['scores'][m][f]['all'])}")
        for cell, c in entry["criterion"].items():
            print(f"  {cell:26s} {c['points']:+5.1f} points, CIs {'apart' if c['cis_apart'] else 'overlap'}")
    results["seeds_with_every_cell"] = sum(e["cells_met"] == len(CRITERION) for e in results["seeds"].values())
    save()


if __name__ == "__main__":
    main()
