"""Training step time of every method against clip at the same batch, next to the encoder work it adds.

A method's encoder work is its image and text encodings weighted by their measured FLOPs (forward +
backward), relative to clip's B images + B captions: negclip and ce_clip encode (1+K)·B texts,
hard_positive (2+K)·B, clear_glass M·N pairs, combined all of them. "overhead" = time ratio / work
ratio − 1: what the loss and batch plumbing cost beyond the encoders (goal: within 15%).
Everything is measured side by side in one run, interleaved round-robin, and reported as medians.

Placeholder negatives and positives (mask False) are not encoded, as in the trainer, and not counted as work.

  python bench/method_step_time.py [--model compclip-tiny-rn] [--batch 128] [--rounds 7] [--out FILE.json]
  python bench/method_step_time.py --smoke      # seconds: the micro model, 1 round (make test runs it)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from compclip.config import LossConfig, load_params
from compclip.losses import build_loss
from compclip.models.factory import create
from compclip.provenance import write_result
from compclip.training.optim import param_groups
from compclip.training.step import forward_backward


def make_batch(needs: set[str], b: int, k: int, m: int, n: int, size: int, ctx: int) -> dict:
    g = torch.Generator().manual_seed(0)
    tok = lambda *shape: torch.randint(1, 49000, (*shape, ctx), generator=g)  # noqa: E731
    batch = {}
    if "pairs" in needs:
        batch |= {"image": torch.randn(b, 3, size, size, generator=g), "text": tok(b)}
    if "negatives" in needs:
        batch |= {"neg_text": tok(b, k), "neg_mask": torch.rand(b, k, generator=g) > 0.1}
    if "positives" in needs:
        batch |= {"pos_text": tok(b), "pos_mask": torch.rand(b, generator=g) > 0.5}
    if "groups" in needs:
        batch |= {"group_image": torch.randn(m, n, 3, size, size, generator=g), "group_text": tok(m, n)}
    return batch


def encodings(batch: dict, skip_invalid: bool) -> tuple[int, int]:
    images = sum(batch[k].shape[:-3].numel() for k in ("image", "group_image") if k in batch)
    texts = sum(batch[k].shape[:-1].numel() for k in ("text", "group_text") if k in batch)
    for key, mask in (("neg_text", "neg_mask"), ("pos_text", "pos_mask")):
        if key in batch:
            texts += int(batch[mask].sum()) if skip_invalid else batch[key].shape[:-1].numel()
    return images, texts


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="compclip-tiny-rn")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, measures nothing")
    a = ap.parse_args()
    if a.smoke:
        a.model, a.batch, a.rounds = "compclip-micro", 8, 1
    dev = torch.device(a.device)
    p = load_params()
    torch.manual_seed(0)
    model = create(a.model, device=dev).model
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    ctx, k = model.context_length, len(p.loss.negative_rules)
    cg = p.loss.clear_glass
    recipes = {name: recipe for name, recipe in p.methods.items()}
    centroid = LossConfig(**{**p.loss.model_dump(), "clear_glass": {**cg.model_dump(), "variant": "centroid"}})
    cases = {name: (build_loss(r, p.loss, p.loss.negative_rules), None) for name, r in recipes.items()}
    if "clear_glass" in recipes:
        cases["clear_glass(centroid)"] = (build_loss(recipes["clear_glass"], centroid, p.loss.negative_rules), None)
    m, n = (2, 2) if a.smoke else (cg.groups_per_batch, cg.group_size)
    cases = {name: (loss.to(dev), {key: v.to(dev) for key, v in make_batch(loss.needs, a.batch, k, m, n, size,
                                                                           ctx).items()})
             for name, (loss, _) in cases.items()}

    # encoder cost per item, forward + backward, from FLOP counts of each tower alone
    probe = 16
    img_in, txt_in = torch.randn(probe, 3, size, size, device=dev), torch.randint(1, 49000, (probe, ctx), device=dev)
    f_img = flops(lambda: model.encode_image(img_in).sum().backward()) / probe
    f_txt = flops(lambda: model.encode_text(txt_in).sum().backward()) / probe
    model.zero_grad()

    def work(loss, batch):
        i, t = encodings(batch, loss.skips_invalid)
        return i * f_img + t * f_txt

    def step(loss, batch):
        opt.zero_grad(set_to_none=True)
        forward_backward(model, loss, batch, skip_invalid=loss.skips_invalid)
        opt.step()
        loss.end_step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for loss, batch in cases.values():  # warm up every path once
        step(loss, batch)
    times = {name: [] for name in cases}
    for _ in range(a.rounds):
        for name, (loss, batch) in cases.items():
            t = time.perf_counter()
            step(loss, batch)
            times[name].append(time.perf_counter() - t)

    base_t, base_w = statistics.median(times["clip"]), work(*cases["clip"])
    print(f"model {a.model}, batch {a.batch}, K={k} negatives, groups {m}x{n}; "
          f"medians of {a.rounds} interleaved rounds; "
          f"{torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'cpu, {torch.get_num_threads()} threads'}")
    print(f"encoder FLOPs per item (fwd+bwd): image {f_img / 1e6:.1f} M, text {f_txt / 1e6:.1f} M")
    print(f"{'method':24}{'images':>8}{'texts':>8}{'step s':>9}{'time x':>9}{'work x':>9}{'overhead':>10}")
    results = {}
    for name, (loss, batch) in cases.items():
        t = statistics.median(times[name])
        i, tx = encodings(batch, loss.skips_invalid)
        tr, wr = t / base_t, work(loss, batch) / base_w
        results[name] = {"images": i, "texts": tx, "step_s_median": t, "time_ratio": tr, "work_ratio": wr,
                         "overhead": tr / wr - 1}
        print(f"{name:24}{i:>8}{tx:>8}{t:>9.3f}{tr:>9.2f}{wr:>9.2f}{tr / wr - 1:>+10.1%}")
    if a.out:
        write_result(a.out, results, {**vars(a), "groups": [m, n], "negatives_k": k,
                                      "methods": p.methods, "loss": p.loss.model_dump(mode="json")}, a.device)


if __name__ == "__main__":
    main()
