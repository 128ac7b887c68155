"""The CUDA path, checked where a GPU is lent (not a test: CI has no GPU).

For every method of params.yaml, on the GPU: four optimizer steps in fp32, AMP fp16 (with GradScaler) and
AMP bf16 through the trainer's forward_backward; the first loss must be within 5% of fp32's, and the last
step's unscaled gradients finite (GradScaler may skip early fp16 steps that overflow: that is its job). Then NCCL: a process group on the GPU, DDP around the model, and the gather
helper's collective run for real (world of one: a single GPU cannot host two NCCL ranks).

  python bench/gpu_check.py [--model compclip-tiny-rn] [--batch 128] [--out FILE.json]
  python bench/gpu_check.py --smoke     # on the CPU: fp32 only and gloo, tiny sizes (make test runs it)
"""

from __future__ import annotations

import argparse
import os
from contextlib import nullcontext

import torch

from compclip.config import load_params
from compclip.losses import build_loss
from compclip.losses.distributed import _GatherLocalGrad
from compclip.models.factory import create
from compclip.provenance import write_result
from compclip.training.step import forward_backward
from method_step_time import make_batch  # the sibling script (bench/ is sys.path[0] when run as a file)


def autocast_for(precision: str):
    if precision == "fp32":
        return nullcontext
    dtype = torch.float16 if precision == "amp" else torch.bfloat16
    return lambda: torch.autocast("cuda", dtype=dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="compclip-tiny-rn")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="CPU, fp32 and gloo only: checks the script runs")
    a = ap.parse_args()
    if a.smoke:
        a.model, a.batch = "compclip-micro", 8
    dev = torch.device("cpu") if a.smoke else torch.device("cuda", 0)
    precisions = ("fp32",) if a.smoke else ("fp32", "amp", "amp_bf16")
    p = load_params()
    cg, k = p.loss.clear_glass, len(p.loss.negative_rules)
    m, n = (2, 2) if a.smoke else (cg.groups_per_batch, cg.group_size)
    print(f"{'cpu (smoke)' if a.smoke else torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    failures, results = 0, {}
    for method, recipe in p.methods.items():
        losses = {}
        for precision in precisions:
            torch.manual_seed(0)
            model = create(a.model, device=dev).model
            loss_fn = build_loss(recipe, p.loss, p.loss.negative_rules).to(dev)
            size = model.visual.image_size
            size = size[0] if isinstance(size, (tuple, list)) else size
            batch = {key: v.to(dev) for key, v in make_batch(loss_fn.needs, a.batch, k, m, n, size,
                                                              model.context_length).items()}
            scaler = torch.amp.GradScaler(dev.type, enabled=precision == "amp")
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            skipped = 0
            for step in range(4):  # fp16: GradScaler skips steps whose scaled gradients overflow, then settles
                opt.zero_grad(set_to_none=True)
                terms = forward_backward(model, loss_fn, batch, autocast=autocast_for(precision), scale=scaler.scale,
                                         skip_invalid=loss_fn.skips_invalid)
                if step == 0:
                    total = float(sum(terms.values()))
                scaler.unscale_(opt)
                grads_ok = all(torch.isfinite(q.grad).all() for q in model.parameters() if q.grad is not None)
                skipped += not grads_ok
                scaler.step(opt)
                scaler.update()
                loss_fn.end_step()
            losses[precision] = total
            rel = abs(total - losses["fp32"]) / abs(losses["fp32"])
            ok = grads_ok and torch.isfinite(torch.tensor(total)) and rel < 0.05 and skipped < 4
            failures += not ok
            results[f"{method}/{precision}"] = {"first_loss": total, "rel_to_fp32": rel, "skipped": skipped,
                                                 "grads_finite": bool(grads_ok), "ok": bool(ok)}
            print(f"{method:14} {precision:9} first-step loss {total:9.5f}  rel. to fp32 {rel:7.2e}  "
                  f"steps skipped by GradScaler {skipped}/4, last grads finite {grads_ok}  {'ok' if ok else 'FAIL'}")

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    if a.smoke:
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
        model = torch.nn.parallel.DistributedDataParallel(create(a.model, device=dev).model)
    else:
        torch.distributed.init_process_group("nccl", rank=0, world_size=1, device_id=dev)
        model = torch.nn.parallel.DistributedDataParallel(create(a.model, device=dev).model, device_ids=[0])
    loss_fn = build_loss(p.methods["ce_clip"], p.loss, p.loss.negative_rules).to(dev)
    size = model.module.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    batch = {key: v.to(dev) for key, v in make_batch(loss_fn.needs, a.batch, k, 0, 0, size,
                                                      model.module.context_length).items()}
    terms = forward_backward(model, loss_fn, batch, autocast=autocast_for("fp32" if a.smoke else "amp_bf16"))
    x = torch.randn(4, 8, device=dev, requires_grad=True)
    y = _GatherLocalGrad.apply(x, 0, 1)
    y.sum().backward()
    nccl_ok = torch.equal(y, x) and torch.equal(x.grad, torch.ones_like(x))
    failures += not nccl_ok
    print(f"NCCL DDP step (ce_clip, bf16): loss {float(sum(terms.values())):.5f}; all_gather + local grad "
          f"{'ok' if nccl_ok else 'FAIL'}")
    torch.distributed.destroy_process_group()
    results["ddp_gather"] = {"ok": bool(nccl_ok), "backend": "gloo" if a.smoke else "nccl"}
    if a.out:
        write_result(a.out, results, {**vars(a), "methods": p.methods}, str(dev))
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
