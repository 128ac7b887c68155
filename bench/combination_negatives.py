"""Combination-aware negatives: the same methods, budget and seed trained on negatives with and without the
ones that bring in a combination no training caption states (negatives.unseen_combinations drop / keep),
scored on SugarCrepe's swap and replace files, all items, seen and held-out combinations, with n and CIs;
and, where the benchmarks stage's hard_positives.json is, on Kamath et al.'s hard-positive items: original
accuracy, Augmented Test Accuracy and brittleness.

Both negatives tables are built from the demo's manifest into --work (the second from the first's cache,
so only the write pass runs again); each method, with its method_overrides (negclip trains on its swaps),
fine-tunes train.init_from (the pretrain stage's CLIP) for --steps with MLflow off; evaluation reads
evaluate.sugarcrepe. A method without negatives (clip) trains once: it is the reference both tables are read
against. Results are written after every model, so a run cut short keeps what it finished.

--policies drop trains on one table only; --shared-negatives trains every method on loss.negative_rules (not
its method_overrides' rules), so that hard_positive and negclip differ only in the positive: what the
second positive alone does to brittleness.

  python bench/combination_negatives.py --steps 200 --out bench/results/combination_negatives_cpu.json
                                         # after `make demo` (it needs the manifest and models/pretrain)
  python bench/combination_negatives.py --methods clip negclip hard_positive --policies drop --shared-negatives
  python bench/combination_negatives.py --smoke      # seconds: the tiny world, checks it runs

On a GPU machine without spaCy: build both tables here, carry --work, train there
(bench/gpu_combination_negatives.sh runs the second line for two budgets side by side).
  python bench/combination_negatives.py --work W --tables-only
  python bench/combination_negatives.py --work W --reuse-tables --device cuda --batch-size 128 --steps 600 \
      --methods clip negclip ce_clip --num-workers 4 --out OUT/combination_negatives_600steps_gpu.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from compclip.config import Params, load_params
from compclip.data.records import load_json
from compclip.evaluation.encode import EmbeddingCache
from compclip.evaluation.evaluate import score_hard_positives
from compclip.evaluation.run import evaluate_sugarcrepe
from compclip.losses import NEEDS
from compclip.models.factory import load_model, resolve_device
from compclip.provenance import write_result
from compclip.training.trainer import train

FILES = ("swap_obj", "swap_att", "replace_obj", "replace_att", "replace_rel", "add_obj", "add_att")
POLICIES = ("keep", "drop")
HARD_POSITIVES = ("original", "augmented", "brittleness")


def with_policy(p: Params, policy: str, work: Path, steps: int, train: dict | None = None) -> Params:
    """p reading the `policy` table from work/negatives_<policy> and training into work/models_<steps>steps/<policy>
    (budgets can run side by side in one work folder); `train`: further train.* settings (device, batch, workers)."""
    neg = p.negatives.model_copy(update={"out_dir": work / f"negatives_{policy}", "unseen_combinations": policy})
    tr = p.train.model_copy(update={"out_dir": work / f"models_{steps}steps" / policy, "max_steps": steps,
                                    "resume": "latest", **(train or {})})
    return p.model_copy(update={"negatives": neg, "train": tr, "mlflow": p.mlflow.model_copy(update={"enabled": False})})


def build_tables(p: Params, work: Path, reuse: bool, policies: tuple[str, ...] = POLICIES) -> dict[str, dict]:
    """Each policy's table's per-rule counts of dropped negatives. reuse: read the summaries of tables an earlier
    --tables-only run built into work (this machine may lack spaCy); else build them (spaCy)."""
    counts = {}
    for policy in policies:
        q = with_policy(p, policy, work, 1)
        out = Path(q.negatives.out_dir)
        if reuse:
            if not (out / "summary.json").is_file():
                raise SystemExit(f"{out}/summary.json not found: build the tables with --tables-only first")
            summary = json.loads((out / "summary.json").read_text())
            if summary.get("unseen_combinations", {}).get("policy", policy) != policy:
                raise SystemExit(f"{out}/summary.json was built with another unseen_combinations policy")
        else:
            from compclip.text.negatives_table import build_negatives  # spaCy: only where the tables are built

            if policy == "drop" and (work / "negatives_keep" / "cache").is_dir():  # only the write pass runs again
                shutil.copytree(work / "negatives_keep" / "cache", out / "cache", dirs_exist_ok=True)
            summary = build_negatives(Path(p.ingest.out_dir) / "manifest.parquet", q.negatives, q.seed)
        counts[policy] = summary["unseen_combinations"]["by_rule"]
    return counts


def cell(r: dict) -> dict:
    return {"accuracy": r["accuracy"], "ci": [r["ci_low"], r["ci_high"]], "n": r["n"]}


def smoke_params(work: Path, make_world: bool = True) -> Params:
    """A tiny shapes world (as the tests make it; make_world False: made by an earlier run) with its positives
    table and hard-positive items, and the micro model from scratch."""
    from compclip.data.manifest import ingest
    from compclip.data.synth import synthesize

    p = load_params()
    s = work / "synth"
    synth = p.synth.model_copy(update={"out_dir": s, "scenes": p.synth.scenes.model_copy(
        update={"train": 120, "val": 10, "test": 40}), "vg_scenes": 10, "cc3m_scenes": 10, "cc3m_shard_size": 8})
    coco = [c.model_copy(update={"captions": s / "coco/annotations" / f"captions_{k}.json", "images": s / "coco" / k})
            for c, k in zip(p.ingest.coco, ("train", "val", "test"))]
    ing = p.ingest.model_copy(update={"out_dir": work / "ingest", "coco": coco, "vg": [s / "vg"], "cc3m": [s / "cc3m"]})
    q = p.model_copy(update={
        "synth": synth, "ingest": ing, "model": p.model.model_copy(update={"name": "compclip-micro"}),
        "negatives": p.negatives.model_copy(update={"scenes": s / "scenes.jsonl"}),
        "positives": p.positives.model_copy(update={"out_dir": work / "positives"}),
        "benchmarks": p.benchmarks.model_copy(update={"out_dir": work / "benchmarks", "formats": None}),
        "train": p.train.model_copy(update={"init_from": None, "batch_size": 8, "warmup_steps": 1}),
        "evaluate": p.evaluate.model_copy(update={"bootstrap_samples": 50, "sugarcrepe": p.evaluate.sugarcrepe.model_copy(
            update={"data": s / "sugarcrepe", "images": s / "coco/test"})})})
    if make_world:
        from compclip.data.scenes import SceneChecker
        from compclip.evaluation.benchmarks import hard_positive_items
        from compclip.text.positives_table import build_positives

        synthesize(synth, p.seed)
        ingest([(c.captions, c.images, c.split) for c in coco], ing.vg, ing.cc3m, ing.out_dir, ing.max_caption_words,
               ing.verify_images, ing.hash_split)
        build_positives(ing.out_dir / "manifest.parquet", None, q.positives, q.seed)
        items, _ = hard_positive_items(q, q.benchmarks, SceneChecker(s / "scenes.jsonl"))
        q.benchmarks.out_dir.mkdir(parents=True, exist_ok=True)
        (q.benchmarks.out_dir / "hard_positives.json").write_text(json.dumps(items) + "\n")
    return q


def reads_negatives(recipe: dict[str, float]) -> bool:
    return any("negatives" in NEEDS[term] for term in recipe)


def hard_positive_file(q: Params) -> Path | None:
    f = Path(q.benchmarks.out_dir) / "hard_positives.json" if q.benchmarks else None
    return f if f is not None and f.is_file() else None


def scores_of(model: str, q: Params, device: str) -> dict:
    """SugarCrepe's files (all items, seen, held-out) and, where the benchmarks stage wrote them, the
    hard-positive items: original accuracy, ATA and brittleness over all items."""
    dev = resolve_device(device)
    cache = EmbeddingCache(load_model(model, dev), dev, q.evaluate.batch_size)
    ci = (q.evaluate.bootstrap_samples, q.evaluate.confidence, q.seed)
    scores = evaluate_sugarcrepe(model, q.evaluate.sugarcrepe.data, q.evaluate.sugarcrepe.images, seed=q.seed,
                                 bootstrap_samples=ci[0], confidence=ci[1], cache=cache)["sugarcrepe"]
    out = {f: {part: cell(scores[f] if part == "all" else scores[f][part])
               for part in ("all", "seen", "held_out") if part == "all" or part in scores[f]}
           for f in FILES if f in scores}
    items = hard_positive_file(q)
    if items is not None:
        hp = score_hard_positives(cache, load_json(items), *ci)
        if hp:
            out["hard_positives"] = {k: cell(hp["all"][k]) for k in HARD_POSITIVES}
    return out


def fmt(c: dict) -> str:
    return f"{100 * c['accuracy']:5.1f} [{100 * c['ci'][0]:.1f}, {100 * c['ci'][1]:.1f}] (n={c['n']})"


def rows(scores: dict):
    """(file, part, cell) of one model's scores, in the table's order."""
    for f in FILES:
        for part in ("all", "seen", "held_out"):
            if scores.get(f, {}).get(part):
                yield f, part, scores[f][part]
    for k in HARD_POSITIVES:
        if k in scores.get("hard_positives", {}):
            yield "hard_pos", k, scores["hard_positives"][k]


def print_table(results: dict) -> None:
    policies = list(results["policies"])
    print(f"{results['steps']} steps, batch {results['batch_size']}, seed {results['seed']}, {results['device']}; "
          "accuracy % [95% CI] (n)" + ("; negatives dropped per rule under `drop`:" if "drop" in policies else ""))
    for rule in results["negative_rules"] if "drop" in policies else []:
        d = results["policies"]["drop"]["negatives"].get(rule, {})
        print(f"  {rule}: {d.get('dropped', 0)} of {d.get('valid', 0)} valid negatives")
    for method, ref in results.get("reference", {}).items():
        print(f"{method} (no negatives: the reference):")
        for f, part, c in rows(ref):
            print(f"  {f:<12} {part:<11} {fmt(c)}")
    for method in results["methods"]:
        print(f"{method}:")
        by_policy = [dict(((f, part), c) for f, part, c in rows(results["policies"][pol]["methods"].get(method, {})))
                     for pol in policies]
        for key in by_policy[0]:
            if all(key in b for b in by_policy):
                print(f"  {key[0]:<12} {key[1]:<11} " + "   ".join(f"{pol} {fmt(b[key])}" for pol, b in zip(policies, by_policy)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["negclip", "ce_clip"])
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: train.max_steps)")
    ap.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: train.batch_size)")
    ap.add_argument("--device", default=None, help="train and evaluate here (default: train.device)")
    ap.add_argument("--num-workers", type=int, default=None, help="data-loading processes (default: train.num_workers)")
    ap.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES),
                    help="the unseen_combinations tables to train on (default: both)")
    ap.add_argument("--shared-negatives", action="store_true",
                    help="every method trains on loss.negative_rules, not its method_overrides' rules")
    ap.add_argument("--work", default=None, help="folder for the tables and models (default: a temporary one)")
    ap.add_argument("--tables-only", action="store_true", help="build both tables into --work and stop")
    ap.add_argument("--reuse-tables", action="store_true", help="the tables --tables-only built into --work")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="the tiny world and a few steps: checks it runs")
    a = ap.parse_args()
    if (a.tables_only or a.reuse_tables) and not a.work:
        ap.error("--tables-only and --reuse-tables need --work")
    work = Path(a.work or tempfile.mkdtemp(prefix="compclip-combinations-"))
    p = smoke_params(work / "world", make_world=not a.reuse_tables) if a.smoke else load_params()
    a.steps = 3 if a.smoke else (a.steps or p.train.max_steps)
    manifest = Path(p.ingest.out_dir) / "manifest.parquet"
    if not manifest.is_file() or (p.train.init_from and not Path(p.train.init_from).is_file()):
        raise SystemExit(f"{manifest} or {p.train.init_from} not found: run `make demo` first")
    device = a.device or p.train.device
    train_set = {k: v for k, v in {"device": device, "batch_size": a.batch_size, "num_workers": a.num_workers}.items()
                 if v is not None}

    def recipe_params(method: str) -> Params:
        q = p.for_method(method)
        if a.shared_negatives:
            q = q.model_copy(update={"loss": q.loss.model_copy(update={"negative_rules": p.loss.negative_rules})})
        return q

    compared = [m for m in a.methods if reads_negatives(p.recipe(m))]
    # every rule a compared method trains on (its method_overrides included, unless --shared-negatives)
    rules = list(dict.fromkeys(r for m in compared for r in recipe_params(m).loss.negative_rules))
    counts = build_tables(p, work, a.reuse_tables, a.policies)
    if a.tables_only:
        print(f"both tables built in {work}")
        return
    results: dict = {"steps": a.steps, "batch_size": a.batch_size or p.train.batch_size, "lr": p.train.lr,
                     "seed": p.seed, "device": device, "negative_rules": rules, "complete": False,
                     "methods": compared, "shared_negatives": a.shared_negatives,
                     "hard_positive_items": str(items) if (items := hard_positive_file(p)) else None,
                     "reference": {}, "train_seconds": {},
                     "policies": {pol: {"negatives": {r: counts[pol].get(r, {}) for r in rules}, "methods": {},
                                        "negative_rules": {}} for pol in a.policies}}
    dev = str(resolve_device(device))

    def save() -> None:
        if a.out:
            write_result(a.out, results, vars(a), dev)

    for method in a.methods:
        # a method that reads no negatives is the same under both tables: trained once, the reference
        policies = a.policies if method in results["methods"] else ("reference",)
        for policy in policies:
            table = a.policies[0] if policy == "reference" else policy  # clip reads none: any table's folder
            qm = with_policy(recipe_params(method), table, work, a.steps, train_set)
            # models of --shared-negatives apart (other models than the default run's); the reference reads none
            folder = policy + ("_shared" if a.shared_negatives and policy != "reference" else "")
            qm = qm.model_copy(update={"train": qm.train.model_copy(
                update={"out_dir": Path(qm.train.out_dir).parent / folder})})
            started = time.perf_counter()
            trained = train(qm, method)
            results["train_seconds"][f"{method}/{policy}"] = round(time.perf_counter() - started, 1)
            scores = scores_of(trained["model"], qm, device)
            if policy == "reference":
                results["reference"][method] = scores
            else:
                results["policies"][policy]["negative_rules"][method] = qm.loss.negative_rules
                results["policies"][policy]["methods"][method] = scores
            save()
    results["complete"] = True
    save()
    print_table(results)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
