"""One optimisation step's forward and backward: encode every image and text of the batch in one
model call, gather once across processes, sum the loss terms, and accumulate gradients over micro-batches
with cached features (open_clip's scheme) so that the gradient equals the full batch's."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from compclip.losses.distributed import gather_features

PAIR_TEXTS = ("text", "neg_text", "pos_text")


MASKS = {"neg_text": "neg_mask", "pos_text": "pos_mask"}


def encode(model, batch: dict[str, torch.Tensor], skip_invalid: bool = False) -> dict[str, torch.Tensor]:
    """Features of one (micro-)batch, shaped like the batch: (b, D), (b, K, D), (m, n, D).

    skip_invalid: placeholder negatives and positives (mask False) are not encoded; their features are
    zeros. Only for losses that never read them (mask_invalid: true), where it saves their encoder work."""
    images, texts, spans = [], [], []
    if "image" in batch:
        images.append(batch["image"])
    if "group_image" in batch:
        images.append(batch["group_image"].flatten(0, 1))
    for key in (*PAIR_TEXTS, "group_text"):
        if key in batch:
            t = batch[key]
            rows = t.reshape(-1, t.shape[-1])
            keep = batch[MASKS[key]].reshape(-1) if skip_invalid and key in MASKS else None
            spans.append((key, t.shape[:-1], keep))
            texts.append(rows if keep is None else rows[keep])
    out = model(torch.cat(images), torch.cat(texts))  # through the (DDP) wrapper, so gradients sync
    img, txt = out["image_features"], out["text_features"]
    feats = {"logit_scale": out["logit_scale"]}
    b = batch["image"].shape[0] if "image" in batch else 0
    if b:
        feats["image_features"] = img[:b]
    if "group_image" in batch:
        m, n = batch["group_image"].shape[:2]
        feats["group_image_features"] = img[b:].reshape(m, n, -1)
    names = {"text": "text_features", "neg_text": "neg_features", "pos_text": "pos_features",
             "group_text": "group_text_features"}
    offset = 0
    for key, shape, keep in spans:
        count = shape.numel() if keep is None else int(keep.sum())
        part = txt[offset:offset + count]
        if keep is not None:  # scatter the encoded rows back; skipped rows stay zero
            part = part.new_zeros(shape.numel(), part.shape[-1]).index_copy(0, keep.nonzero().squeeze(1), part)
        feats[names[key]] = part.reshape(*shape, -1)
        offset += count
    for mask in ("neg_mask", "pos_mask"):
        if mask in batch:
            feats[mask] = batch[mask]
    return feats


def split(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """Micro-batches along the leading (sample or group) dimension of every tensor."""
    chunks = {k: v.chunk(parts) for k, v in batch.items()}
    return [{k: c[i] for k, c in chunks.items()} for i in range(parts)]


def join(parts: list[dict[str, torch.Tensor]], logit_scale: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0] if k != "logit_scale"}
    out["logit_scale"] = logit_scale
    return out


def forward_backward(model, loss_fn, batch, *, accum_steps: int = 1, rank: int = 0, world_size: int = 1,
                     autocast=nullcontext, scale=lambda x: x, skip_invalid: bool = False) -> dict[str, torch.Tensor]:
    """Backpropagate the step's loss into model's .grad; return the (detached) loss terms."""
    if accum_steps == 1:
        with autocast():
            feats = encode(model, batch, skip_invalid)
        terms = loss_fn(**gather_features(_fp32(feats), rank, world_size))
        scale(sum(terms.values())).backward()
        return {k: v.detach() for k, v in terms.items()}

    micro = split(batch, accum_steps)
    with torch.no_grad(), autocast():
        cached = [encode(model, mb, skip_invalid) for mb in micro]
    for j, mb in enumerate(micro):
        last = j == accum_steps - 1
        sync = nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast():
                live = encode(model, mb, skip_invalid)
            # logit_scale is a direct input of the loss: keep its graph in one pass only, or its
            # gradient would be counted accum_steps times
            scale_ = live["logit_scale"] if last else live["logit_scale"].detach()
            feats = join([*cached[:j], live, *cached[j + 1:]], scale_)
            terms = loss_fn(**gather_features(_fp32(feats), rank, world_size))
            scale(sum(terms.values())).backward()
    return {k: v.detach() for k, v in terms.items()}


def _fp32(feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Loss math in fp32 (it runs outside autocast): fp16 logits lose the small margins CMR and the
    thresholds work with."""
    return {k: v.float() if v.is_floating_point() and v.dtype != torch.float64 else v for k, v in feats.items()}
