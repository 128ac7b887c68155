"""Combination-aware negatives: the same methods, budget and seed trained on negatives with and without the
ones that bring in a combination no training caption states (negatives.unseen_combinations drop / keep),
scored on SugarCrepe's swap and replace files, all items, seen and held-out combinations, with n and CIs.

Both negatives tables are built from the demo's manifest into --work (the second from the first's cache,
so only the write pass runs again); each method, with its method_overrides (negclip trains on its swaps),
fine-tunes train.init_from (the pretrain stage's CLIP) for --steps with MLflow off; evaluation reads
evaluate.sugarcrepe.

  python bench/combination_negatives.py --steps 200 --out bench/results/combination_negatives_cpu.json
                                         # after `make demo` (it needs the manifest and models/pretrain)
  python bench/combination_negatives.py --smoke      # seconds: the tiny world, checks it runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from compclip.config import Params, load_params
from compclip.evaluation.run import evaluate_sugarcrepe
from compclip.provenance import write_result
from compclip.text.negatives_table import build_negatives
from compclip.training.trainer import train

FILES = ("swap_obj", "swap_att", "replace_obj", "replace_att", "replace_rel")


def with_policy(p: Params, policy: str, work: Path, steps: int) -> Params:
    neg = p.negatives.model_copy(update={"out_dir": work / f"negatives_{policy}", "unseen_combinations": policy})
    tr = p.train.model_copy(update={"out_dir": work / f"models_{policy}", "max_steps": steps, "resume": "latest"})
    return p.model_copy(update={"negatives": neg, "train": tr, "mlflow": p.mlflow.model_copy(update={"enabled": False})})


def cell(r: dict) -> dict:
    return {"accuracy": r["accuracy"], "ci": [r["ci_low"], r["ci_high"]], "n": r["n"]}


def smoke_params(work: Path) -> Params:
    """A tiny shapes world (as the tests make it) and the micro model from scratch."""
    from compclip.data.manifest import ingest
    from compclip.data.synth import synthesize

    p = load_params()
    s = work / "synth"
    synth = p.synth.model_copy(update={"out_dir": s, "scenes": p.synth.scenes.model_copy(
        update={"train": 120, "val": 10, "test": 40}), "vg_scenes": 10, "cc3m_scenes": 10, "cc3m_shard_size": 8})
    coco = [c.model_copy(update={"captions": s / "coco/annotations" / f"captions_{k}.json", "images": s / "coco" / k})
            for c, k in zip(p.ingest.coco, ("train", "val", "test"))]
    ing = p.ingest.model_copy(update={"out_dir": work / "ingest", "coco": coco, "vg": [s / "vg"], "cc3m": [s / "cc3m"]})
    synthesize(synth, p.seed)
    ingest([(c.captions, c.images, c.split) for c in coco], ing.vg, ing.cc3m, ing.out_dir, ing.max_caption_words,
           ing.verify_images, ing.hash_split)
    return p.model_copy(update={
        "synth": synth, "ingest": ing, "model": p.model.model_copy(update={"name": "compclip-micro"}),
        "negatives": p.negatives.model_copy(update={"scenes": s / "scenes.jsonl"}),
        "train": p.train.model_copy(update={"init_from": None, "batch_size": 8, "warmup_steps": 1}),
        "evaluate": p.evaluate.model_copy(update={"bootstrap_samples": 50, "sugarcrepe": p.evaluate.sugarcrepe.model_copy(
            update={"data": s / "sugarcrepe", "images": s / "coco/test"})})})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["negclip", "ce_clip"])
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: train.max_steps)")
    ap.add_argument("--work", default=None, help="folder for the tables and models (default: a temporary one)")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="the tiny world and a few steps: checks the script runs")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="compclip-combinations-"))
    p = smoke_params(work / "world") if a.smoke else load_params()
    a.steps = 3 if a.smoke else (a.steps or p.train.max_steps)
    manifest = Path(p.ingest.out_dir) / "manifest.parquet"
    if not manifest.is_file() or (p.train.init_from and not Path(p.train.init_from).is_file()):
        raise SystemExit(f"{manifest} or {p.train.init_from} not found: run `make demo` first")

    # every rule a compared method trains on (its method_overrides included)
    rules = list(dict.fromkeys(r for m in a.methods for r in p.for_method(m).loss.negative_rules))
    results: dict = {"steps": a.steps, "batch_size": p.train.batch_size, "negative_rules": rules, "policies": {}}
    for policy in ("keep", "drop"):
        q = with_policy(p, policy, work, a.steps)
        if policy == "drop":  # the first table's cache: only the write pass runs again
            shutil.copytree(work / "negatives_keep" / "cache", Path(q.negatives.out_dir) / "cache", dirs_exist_ok=True)
        summary = build_negatives(manifest, q.negatives, q.seed)
        unseen = summary["unseen_combinations"]["by_rule"]
        row = {"negatives": {rule: unseen.get(rule, {}) for rule in rules}, "methods": {}}
        for method in a.methods:  # each with its own method_overrides (negclip: its swaps), then this budget
            qm = with_policy(p.for_method(method), policy, work, a.steps)
            row.setdefault("negative_rules", {})[method] = qm.loss.negative_rules
            trained = train(qm, method)
            scores = evaluate_sugarcrepe(trained["model"], q.evaluate.sugarcrepe.data, q.evaluate.sugarcrepe.images,
                                         "cpu", q.evaluate.batch_size, bootstrap_samples=q.evaluate.bootstrap_samples,
                                         confidence=q.evaluate.confidence, seed=q.seed)["sugarcrepe"]
            row["methods"][method] = {f: {part: cell(scores[f] if part == "all" else scores[f][part])
                                          for part in ("all", "seen", "held_out") if part == "all" or part in scores[f]}
                                      for f in FILES if f in scores}
        results["policies"][policy] = row

    print(f"{a.steps} steps from {p.train.init_from}, batch {p.train.batch_size}, seed {p.seed}; "
          "accuracy % [95% CI] (n); negatives dropped per rule under `drop`:")
    for rule in rules:
        d = results["policies"]["drop"]["negatives"].get(rule, {})
        print(f"  {rule}: {d.get('dropped', 0)} of {d.get('valid', 0)} valid negatives")
    for method in a.methods:
        print(f"{method}:")
        for f in FILES:
            for part in ("all", "seen", "held_out"):
                cells = [results["policies"][pol]["methods"][method].get(f, {}).get(part) for pol in ("keep", "drop")]
                if all(cells):
                    txt = "   ".join(f"{pol} {100 * c['accuracy']:5.1f} [{100 * c['ci'][0]:.1f}, {100 * c['ci'][1]:.1f}] "
                                     f"(n={c['n']})" for pol, c in zip(("keep", "drop"), cells))
                    print(f"  {f:<12} {part:<9} {txt}")
    if a.out:
        write_result(a.out, results, vars(a))
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
