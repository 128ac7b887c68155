"""A fine-tuning step before and after the CPU speedups, side by side in one run, on the demo's real texts.

"before" is the trainer as it was: open_clip's CLIP.encode_text over the full text context, torch's default
(per-parameter) AdamW, a contiguous (NCHW) image tower and glibc's malloc defaults. "after" is the trainer
now: texts encoded up to their end token, packed into rows of the context (models.text_length), the fused
AdamW that reads and writes only the token embedding's rows texts have read (training.embedding_rows; its
backward sparse, so gradient clipping reads only those rows too), the image tower in channels_last
(models.memory_format) and freed memory kept in the process (compclip.allocator, as every stage runs).
malloc settings are process-wide and cannot be undone, so the steps run in two worker processes, one per
setting, each timing one step at a time while the other waits; the parent interleaves them. Both start from
the same weights and take the same batch: the demo's training captions with their hard negatives
(loss.negative_rules), so the token lengths are the real ones. Each step's FLOPs are counted (FlopCounterMode:
what that step really executes), and a square fp32 matmul is timed in the same rounds as this machine's peak:
"ratio" is the step's FLOP/s over the matmul's. Rounds are interleaved round-robin; medians. The speedup's
spread is reported too: before/after of each round (the two ran back to back), median and interquartile range,
so a reader sees how much of a figure is this shared machine's noise.

Columns measured beside "after" (each with its speedup over "after", same weights and batch):
"default_malloc", the "after" step in the process with glibc's defaults (what compclip.allocator alone gives;
each step's minor page faults are counted too), "contiguous", the image tower back in NCHW (what channels_last
alone gives), and "compile", torch.compile (inductor) of the whole model, its compile time reported apart (the
timed steps come after it; with the token embedding's dense gradient, as inductor cannot compile a sparse
one). Their FLOPs are those of "after": they compute the same thing.

Also measured: the trainer's text setup (every caption and negative tokenized, and checked against the
context) as it was (the tokenizer over every text, twice) and now (each distinct text once, cold; then from
the disk cache, warm).

And the step's other half, loading its batch: the trainer's own loader (TrainingItems, StepBatches, collate)
over the demo's training rows for the demo's first --load-steps steps (train.max_steps), every image decoded
every time (as it was) and with the in-memory image cache (training.data.PreprocessedImages, empty at the
start, as a stage starts), alternating, --load-rounds rounds, medians. "trainer step" adds it to the step:
before = decode every time + "before", after = cache + "after".

  python bench/step_speedups.py [--rounds N] [--out FILE.json]      # after `make demo` (or dvc repro negatives)
  python bench/step_speedups.py --smoke                            # seconds: the micro model, made-up texts
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from compclip.allocator import keep_freed_memory
from compclip.config import load_params
from compclip.losses import build_loss
from compclip.models.factory import create
from compclip.provenance import write_result
from compclip.text import tokens as token_cache
from compclip.training.optim import adamw, param_groups
from compclip.training.step import forward_backward

METHODS = ("clip", "negclip", "ce_clip")


def demo_texts(p, smoke: bool) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Training captions, their K negatives (loss.negative_rules) and validity, as the trainer reads them."""
    if smoke:
        rng = np.random.default_rng(0)
        words = ["a", "red", "blue", "large", "circle", "square", "left", "of", "the", "striped", "star"]
        caps = [" ".join(rng.choice(words, rng.integers(4, 12))) for _ in range(64)]
        k = len(p.loss.negative_rules)
        return caps, [[c[::-1]] * k for c in caps], rng.random((64, k)) > 0.1
    import pandas as pd

    from compclip.data.manifest import load_split
    from compclip.training.data import negative_texts

    manifest = Path(p.ingest.out_dir) / "manifest.parquet"
    negatives = Path(p.negatives.out_dir) / "negatives.parquet"
    if not negatives.is_file():
        raise SystemExit(f"{negatives} not found: run `make demo` (or `dvc repro negatives`) first")
    rows = load_split(manifest, "train")
    texts, valid = negative_texts(negatives, rows, p.loss.negative_rules)
    assert isinstance(rows, pd.DataFrame)
    return rows["caption"].tolist(), texts, valid.numpy()


def training_rows(p, smoke: bool, folder: Path):
    """The demo's training rows (manifest, split train); in --smoke, 12 made-up images, 3 captions each."""
    import pandas as pd

    from compclip.data.manifest import load_split

    if not smoke:
        return load_split(Path(p.ingest.out_dir) / "manifest.parquet", "train")
    from PIL import Image

    rng, rows = np.random.default_rng(0), []
    for i in range(12):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        rows += [{"image_path": str(path), "caption": f"shape {i} caption {j}", "bbox_x": np.nan, "bbox_y": np.nan,
                  "bbox_w": np.nan, "bbox_h": np.nan} for j in range(3)]
    return pd.DataFrame(rows)


def load_seconds(rows, bundle, batch: int, steps: int, seed: int, cache_mb: int) -> tuple[float, dict]:
    """Seconds the trainer's loader takes to produce the batches of steps 0..steps-1 (pairs only: images and
    captions; the negatives are token rows already in memory), from an empty image cache of cache_mb."""
    from functools import partial

    from torch.utils.data import DataLoader

    from compclip.training.data import BatchPlan, PreprocessedImages, StepBatches, TrainingItems, collate

    images = PreprocessedImages(cache_mb * 2**20)
    items = TrainingItems(rows, bundle.preprocess, bundle.tokenizer, images=images)
    done, epoch = 0, 0
    start = time.perf_counter()
    while done < steps:
        sampler = StepBatches(len(rows), batch, seed, epoch)
        for _ in DataLoader(items, batch_sampler=sampler, collate_fn=partial(collate, plan=BatchPlan(batch))):
            done += 1
            if done == steps:
                break
        epoch += 1
    return time.perf_counter() - start, {"decoded": images.misses, "from_memory": images.hits}


def setup_as_it_was(tokenizer, texts: list[str]) -> None:
    """The trainer's text setup before text.tokens: the context check tokenized every text whose bytes could
    exceed the context again, without the cut, then every text was tokenized for training."""
    limit = tokenizer.context_length
    maybe = [t for t in texts if len(t.encode("utf-8")) + 4 > limit]
    if maybe:
        tokenizer(maybe, context_length=max(len(t.encode("utf-8")) for t in maybe) + 4)
    tokenizer(texts)


def candidates(name: str, model: torch.nn.Module, names: list[str]) -> dict[str, torch.nn.Module]:
    """Copies of the "after" model (same weights) with one change each."""
    out = {}
    if "contiguous" in names:
        out["contiguous"] = create(name, channels_last=False).model
        out["contiguous"].load_state_dict(model.state_dict())
    if "compile" in names:
        out["compile"] = torch.compile(copy.deepcopy(model))
    return out


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build_cases(a, p, variants: set[str]) -> tuple[dict, dict, object]:
    """(method, variant) -> (model, loss, batch, optimizer) for the given variants, every model from the same
    weights (seed 0: the same in every process); the batch's facts; the "after" model's bundle."""
    captions, negatives, valid = demo_texts(p, a.smoke)
    torch.manual_seed(0)
    before = create(a.model, fit_text=False, channels_last=False)
    after = create(a.model)
    after.model.load_state_dict(before.model.state_dict())
    tokenizer = before.tokenizer

    # one batch of real captions and negatives (the trainer's tensors), random pixels
    pick = np.random.default_rng(p.seed).choice(len(captions), a.batch, replace=False)
    k = len(p.loss.negative_rules)
    size = before.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    batch = {"image": torch.randn(a.batch, 3, size, size, generator=torch.Generator().manual_seed(0)),
             "text": tokenizer([captions[i] for i in pick]),
             "neg_text": tokenizer([t for i in pick for t in negatives[i]]).reshape(a.batch, k, -1),
             "neg_mask": torch.from_numpy(valid[pick])}
    facts = {"negatives_per_caption": k, "caption_tokens_median": float(batch["text"].argmax(-1).float().median() + 1),
             "context_length": batch["text"].shape[1]}

    models = {"before": before.model, "after": after.model, "default_malloc": after.model,
              **candidates(a.model, after.model, [v for v in a.candidates if v in variants])}
    # "before": torch's per-parameter AdamW; "compile": the fused one (inductor cannot compile the embedding's
    # sparse gradient); the others: the trainer's (training.optim.adamw: on CPU it leaves the embedding's unread
    # rows alone). One optimizer per model, shared by the methods (the trainer's hooks the model's embedding).
    def optimizer(variant: str) -> torch.optim.Optimizer:
        groups = param_groups(models[variant], p.train.weight_decay)
        if variant in ("before", "compile"):
            return torch.optim.AdamW(groups, lr=p.train.lr, fused=variant == "compile")
        return adamw(groups, p.train, torch.device("cpu"), models[variant])

    optimizers = {v: optimizer(v) for v in variants}
    cases = {}
    for method in METHODS:
        loss = build_loss(p.methods[method], p.loss, p.loss.negative_rules)
        needs = {"image", "text"} | ({"neg_text", "neg_mask"} if "negatives" in loss.needs else set())
        data = {key: v for key, v in batch.items() if key in needs}
        for variant in variants:
            cases[method, variant] = (models[variant], loss, data, optimizers[variant], p.train.grad_clip_norm)
    return cases, facts, after


def step(case) -> None:
    model, loss, data, opt, clip_norm = case
    opt.zero_grad(set_to_none=True)
    forward_backward(model, loss, data, skip_invalid=loss.skips_invalid)
    if clip_norm:  # as the trainer (train.grad_clip_norm)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    opt.step()
    loss.end_step()


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def serve(conn, a, allocator: str, variants: set[str]) -> None:
    """One process per malloc setting (glibc's defaults, or compclip.allocator's, which cannot be undone in a
    process): builds its cases, then does what the parent asks, one request at a time, while the other waits."""
    kept = keep_freed_memory() if allocator == "kept" else False
    p = load_params()
    cases, facts, bundle = build_cases(a, p, variants)
    conn.send({"kept": kept, **facts})
    with tempfile.TemporaryDirectory() as folder:
        rows = training_rows(p, a.smoke, Path(folder))
        while (req := conn.recv()) is not None:
            if req[0] == "flops":
                counter = FlopCounterMode(display=False)
                with counter:
                    step(cases[req[1]])
                conn.send(counter.get_total_flops())
            elif req[0] == "step":  # seconds and minor page faults of one step
                faults = minor_faults()
                conn.send((timed(lambda: step(cases[req[1]])), minor_faults() - faults))
            elif req[0] == "load":
                conn.send((len(rows), *load_seconds(rows, bundle, a.batch, a.load_steps, p.seed, req[1])))


class Worker:
    def __init__(self, a, allocator: str, variants: set[str]):
        ctx = mp.get_context("spawn")  # a fresh interpreter: its malloc as the setting leaves it
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, a, allocator, variants), daemon=True)
        self.process.start()
        self.facts = self.conn.recv()

    def ask(self, *request):
        self.conn.send(request)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="default: params.yaml model.name")
    ap.add_argument("--batch", type=int, default=None, help="default: params.yaml train.batch_size")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--setup-rounds", type=int, default=3)
    ap.add_argument("--matmul", type=int, default=1024)
    ap.add_argument("--load-steps", type=int, default=None, help="steps of batch loading timed (default: train.max_steps)")
    ap.add_argument("--load-rounds", type=int, default=3)
    ap.add_argument("--candidates", nargs="*", default=["contiguous", "compile"],
                    choices=["contiguous", "compile"], help="changes to measure on top of 'after' (none: --candidates)")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, measures nothing")
    a = ap.parse_args()
    p = load_params()
    a.model, a.batch = a.model or p.model.name, a.batch or p.train.batch_size
    if a.smoke:
        a.model, a.batch, a.rounds, a.setup_rounds, a.matmul, a.load_steps, a.load_rounds = \
            "compclip-micro", 8, 1, 1, 64, 6, 1
    a.load_steps = a.load_steps or p.train.max_steps
    if not p.train.image_cache_mb:
        raise SystemExit("params.yaml train.image_cache_mb is 0: there is no image cache to time against decoding")

    # "before" as it was: glibc's malloc defaults; "after" and the candidates as the stages run now
    # and "default_malloc": the "after" step in the glibc process, what compclip.allocator alone changes
    workers = {"glibc": Worker(a, "glibc", {"before", "default_malloc"}),
               "kept": Worker(a, "kept", {"after", *a.candidates})}
    allocator = {"before": "glibc", "after": "kept", "default_malloc": "glibc", **{c: "kept" for c in a.candidates}}
    columns = ["default_malloc", *a.candidates]  # each against "after"
    variants = list(allocator)
    flops = {(m, v): workers[allocator[v]].ask("flops", (m, v)) for m in METHODS for v in ("before", "after")}
    # the peak: a square fp32 matmul into a preallocated output, timed here between the rounds
    x, y = torch.randn(a.matmul, a.matmul), torch.randn(a.matmul, a.matmul)
    z, mm_flops = torch.empty(a.matmul, a.matmul), 2 * a.matmul ** 3

    keys = [(m, v) for m in METHODS for v in variants]
    warmup_s = {key: workers[allocator[key[1]]].ask("step", key)[0] for key in keys}  # compile happens here
    times, faults, mm = {key: [] for key in keys}, {key: [] for key in keys}, []
    for _ in range(a.rounds):
        for key in keys:
            seconds, page_faults = workers[allocator[key[1]]].ask("step", key)
            times[key].append(seconds)
            faults[key].append(page_faults)
        mm.append(timed(lambda: [torch.mm(x, y, out=z) for _ in range(10)]) / 10)
    peak = mm_flops / statistics.median(mm)

    facts = workers["kept"].facts
    results = {"batch": a.batch, "model": a.model, "matmul_gflops": peak / 1e9,
               "negatives_per_caption": facts["negatives_per_caption"],
               "caption_tokens_median": facts["caption_tokens_median"], "context_length": facts["context_length"],
               "allocator": {"before": "glibc defaults", "after": "compclip.allocator.keep_freed_memory",
                             "after_settings_accepted": facts["kept"]},
               "methods": {}}
    print(f"model {a.model}, batch {a.batch} pairs (+{results['negatives_per_caption']} negatives each), "
          f"{torch.get_num_threads()} threads, {a.rounds} interleaved rounds, medians; caption tokens median "
          f"{results['caption_tokens_median']:.0f} of a {results['context_length']}-token context; fp32 matmul "
          f"{peak / 1e9:.1f} GFLOP/s; before in a process with glibc's malloc defaults, after in one with "
          f"compclip.allocator's (accepted: {facts['kept']})")
    print(f"  {'method':<10} {'before ms':>10} {'after ms':>9} {'speedup':>8} {'per round, IQR':>15} "
          f"{'ratio before':>13} {'ratio after':>12} {'page faults/step':>17}")
    for method in METHODS:
        row = {}
        for variant in ("before", "after"):
            s = statistics.median(times[method, variant])
            row[variant] = {"step_s_median": s, "gflop": flops[method, variant] / 1e9,
                            "flops_ratio": flops[method, variant] / s / peak,
                            "minor_page_faults_median": statistics.median(faults[method, variant])}
        row["speedup"] = row["before"]["step_s_median"] / row["after"]["step_s_median"]
        per_round = np.array(times[method, "before"]) / np.array(times[method, "after"])
        row["speedup_per_round"] = {"median": float(np.median(per_round)), "q1": float(np.quantile(per_round, 0.25)),
                                    "q3": float(np.quantile(per_round, 0.75)), "min": float(per_round.min()),
                                    "max": float(per_round.max())}
        for variant in columns:
            s = statistics.median(times[method, variant])
            row[variant] = {"step_s_median": s, "first_step_s": warmup_s[method, variant],
                            "speedup_over_after": row["after"]["step_s_median"] / s,
                            "flops_ratio": flops[method, "after"] / s / peak,
                            "minor_page_faults_median": statistics.median(faults[method, variant])}
        results["methods"][method] = row
        print(f"  {method:<10} {row['before']['step_s_median'] * 1e3:10.0f} {row['after']['step_s_median'] * 1e3:9.0f} "
              f"{row['speedup']:7.2f}x {row['speedup_per_round']['q1']:7.2f}-{row['speedup_per_round']['q3']:.2f}x "
              f"{row['before']['flops_ratio']:13.3f} {row['after']['flops_ratio']:12.3f} "
              f"{row['before']['minor_page_faults_median']:8.0f} -> {row['after']['minor_page_faults_median']:.0f}"
              + "".join(f"   {v} {row[v]['step_s_median'] * 1e3:.0f} ms ({row[v]['speedup_over_after']:.2f}x after)"
                        for v in columns))

    # the trainer's text setup: all captions and negatives, tokenized and checked against the context
    captions, negatives, _ = demo_texts(p, a.smoke)
    tokenizer = create(a.model).tokenizer
    texts = captions + [t for row in negatives for t in row]
    setup = {"old": [], "cold": [], "warm": []}
    for _ in range(a.setup_rounds):
        setup["old"].append(timed(lambda: setup_as_it_was(tokenizer, texts)))
        with tempfile.TemporaryDirectory() as cache:
            token_cache._MEMORY.clear()
            setup["cold"].append(timed(lambda: token_cache.tokenize(tokenizer, texts, cache=Path(cache))))
            token_cache._MEMORY.clear()  # a new process: from disk
            setup["warm"].append(timed(lambda: token_cache.tokenize(tokenizer, texts, cache=Path(cache))))
    med = {key: statistics.median(v) for key, v in setup.items()}
    results["text_setup"] = {"texts": len(texts), "distinct": len(set(texts)), **{f"{k}_s_median": v for k, v in med.items()},
                             "old_over_cold": med["old"] / med["cold"], "old_over_warm": med["old"] / med["warm"]}
    print(f"  text setup, {len(texts)} texts ({len(set(texts))} distinct), {a.setup_rounds} rounds: "
          f"as it was {med['old']:.1f} s, once per distinct text {med['cold']:.1f} s ({med['old'] / med['cold']:.1f}x), "
          f"from the disk cache {med['warm']:.2f} s ({med['old'] / med['warm']:.0f}x)")
    # the step's batch: decoded every time (as it was, glibc's defaults) and through the image cache (now),
    # alternating
    loads = {0: [], p.train.image_cache_mb: []}
    for _ in range(a.load_rounds):
        for mb in loads:
            loads[mb].append(workers["glibc" if mb == 0 else "kept"].ask("load", mb))
    for worker in workers.values():
        worker.close()
    per_step = {mb: statistics.median(s for _, s, _ in runs) / a.load_steps for mb, runs in loads.items()}
    n_rows, _, cached = loads[p.train.image_cache_mb][0]
    results["load"] = {"steps": a.load_steps, "rounds": a.load_rounds, "rows": n_rows,
                       "image_cache_mb": p.train.image_cache_mb, **cached,
                       "as_it_was_s_per_step": per_step[0], "cache_s_per_step": per_step[p.train.image_cache_mb],
                       "speedup": per_step[0] / per_step[p.train.image_cache_mb]}
    print(f"  batch loading, the demo's first {a.load_steps} steps of {a.batch} pairs ({n_rows} training rows), "
          f"{a.load_rounds} rounds: {per_step[0] * 1e3:.1f} ms/step decoding every image, "
          f"{per_step[p.train.image_cache_mb] * 1e3:.1f} ms/step with the image cache "
          f"({cached['decoded']} decoded, {cached['from_memory']} from memory; "
          f"{results['load']['speedup']:.1f}x)")
    print("  trainer step = batch loading + step:")
    print(f"  {'method':<10} {'before ms':>10} {'after ms':>9} {'speedup':>8}")
    for method in METHODS:
        row = results["methods"][method]
        before = row["before"]["step_s_median"] + per_step[0]
        after_ = row["after"]["step_s_median"] + per_step[p.train.image_cache_mb]
        row["trainer_step"] = {"before_s": before, "after_s": after_, "speedup": before / after_}
        print(f"  {method:<10} {before * 1e3:10.0f} {after_ * 1e3:9.0f} {before / after_:7.2f}x")
    if a.out:
        write_result(a.out, results, vars(a))


if __name__ == "__main__":
    main()
