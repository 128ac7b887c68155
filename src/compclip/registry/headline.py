"""The numbers the gate compares, from an evaluate metrics.json (reports/evaluate/<method>/metrics.json)."""

from __future__ import annotations

import math

import numpy as np

TAG_PREFIX = "metric."


def headline(metrics: dict) -> dict:
    """Compositional mean over the SugarCrepe-format files (all items; seen and held-out parts beside it),
    retrieval R@1 (mean of both directions) and, when evaluated, zero-shot accuracy; with their n."""
    files = metrics["sugarcrepe"]
    out = {"compositional": _mean([f["accuracy"] for f in files.values()]),
           "compositional_n": sum(f["n"] for f in files.values())}
    for part in ("seen", "held_out"):
        parts = [f[part] for f in files.values() if part in f and f[part]["n"]]
        if parts:
            out[f"compositional_{part}"] = _mean([x["accuracy"] for x in parts])
            out[f"compositional_{part}_n"] = sum(x["n"] for x in parts)
    r = metrics["retrieval"]
    out |= {"i2t_R@1": r["i2t_R@1"], "t2i_R@1": r["t2i_R@1"], "r1": (r["i2t_R@1"] + r["t2i_R@1"]) / 2,
            "r1_n": r.get("captions", 0)}
    # the evaluation suite's zero-shot top-1 (reports/evaluate/<method>/suite/zeroshot.json)
    zeroshot = metrics.get("zeroshot") or metrics.get("suite", {}).get("zeroshot", {}).get("aggregate", {}).get("top1")
    if isinstance(zeroshot, dict) and "accuracy" in zeroshot and zeroshot.get("n"):
        out["zeroshot"] = zeroshot["accuracy"]
        out["zeroshot_n"] = zeroshot.get("n", 0)
    return out


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def to_tags(h: dict) -> dict[str, str]:
    """MLflow keys allow no '@': R@1 is stored as R_at_1 and read back as R@1."""
    return {f"{TAG_PREFIX}{k.replace('@', '_at_')}": repr(float(v)) if isinstance(v, float) else str(v)
            for k, v in h.items()}


def from_tags(tags: dict[str, str]) -> dict:
    out = {}
    for k, v in tags.items():
        if k.startswith(TAG_PREFIX):
            key = k.removeprefix(TAG_PREFIX).replace("_at_", "@")
            out[key] = int(v) if key.endswith("_n") else float(v)
    return out
