"""Training throughput of a compclip model config, and how close it runs to this machine's matmul peak.

Everything is measured side by side in one run, interleaved (train step, matmul, train step, ...), and
reported as medians, because absolute times on a shared machine are not comparable between runs.

  python bench/train_throughput.py [--model compclip-tiny] [--batch 128] [--rounds 15] [--out FILE.json]
  python bench/train_throughput.py --smoke      # seconds: the micro model, 2 rounds (make test runs it)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from compclip.losses import build_loss
from compclip.models.factory import create
from compclip.provenance import write_result
from compclip.training.optim import param_groups


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="compclip-tiny")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--matmul", type=int, default=1024, help="side of the square fp32 matmul used as peak")
    ap.add_argument("--manifest", default="data/ingest/manifest.parquet", help="also time real data loading")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, measures nothing")
    a = ap.parse_args()
    if a.smoke:
        a.model, a.batch, a.rounds, a.matmul = "compclip-micro", 4, 2, 64
    torch.manual_seed(0)

    bundle = create(a.model)
    model, loss_fn = bundle.model, build_loss({"clip": 1.0})
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(a.batch, 3, size, size)
    texts = torch.randint(1, 49000, (a.batch, model.context_length))

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(images, texts)
        sum(loss_fn(**out).values()).backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    step_flops = counter.get_total_flops()

    x, y = torch.randn(a.matmul, a.matmul), torch.randn(a.matmul, a.matmul)
    mm_flops = 2 * a.matmul ** 3
    reps = max(1, int(step_flops / mm_flops))  # about one training step's worth of matmul work

    def matmuls():
        for _ in range(reps):
            torch.mm(x, y)

    loader = None
    if Path(a.manifest).is_file():
        from compclip.data.manifest import load_split
        from compclip.training.data import BatchPlan, TrainingItems, collate

        rows = load_split(a.manifest, "train").head(a.batch * 4)
        data = TrainingItems(rows, bundle.preprocess, bundle.tokenizer)
        plan = BatchPlan(a.batch)

        def load_batch():
            collate([data["pair", i] for i in range(min(a.batch, len(rows)))], plan)

        loader = load_batch

    for _ in range(3):
        step(), matmuls()
    t_step, t_mm, t_load = [], [], []
    for _ in range(a.rounds):
        t_step.append(timed(step))
        t_mm.append(timed(matmuls) / reps)
        if loader:
            t_load.append(timed(loader))

    s, m = statistics.median(t_step), statistics.median(t_mm)
    achieved, peak = step_flops / s, mm_flops / m
    print(f"model {a.model}, batch {a.batch}, {torch.get_num_threads()} threads, {a.rounds} rounds, medians")
    print(f"  train step (model+loss+AdamW):  {s * 1000:8.1f} ms   {a.batch / s:8.1f} pairs/s")
    if t_load:
        ld = statistics.median(t_load)
        print(f"  + data loading (decode, preprocess): {ld * 1000:8.1f} ms   {a.batch / (s + ld):8.1f} pairs/s end to end")
    print(f"  FLOPs per step (fwd+bwd, FlopCounterMode): {step_flops / 1e9:.2f} GFLOP")
    print(f"  achieved: {achieved / 1e9:.1f} GFLOP/s; fp32 {a.matmul}^3 matmul: {peak / 1e9:.1f} GFLOP/s")
    print(f"  ratio achieved/matmul: {achieved / peak:.3f}")
    if a.out:
        results = {"step_s_median": s, "matmul_s_median": m, "step_gflop": step_flops / 1e9,
                   "achieved_gflops": achieved / 1e9, "matmul_gflops": peak / 1e9, "ratio": achieved / peak,
                   "load_s_median": statistics.median(t_load) if t_load else None}
        write_result(a.out, results, vars(a))


if __name__ == "__main__":
    main()
