"""Plain-text tables of evaluation results, for the terminal and the demo."""

from __future__ import annotations

from compclip.evaluation.sugarcrepe import FILES


def sugarcrepe_table(results: dict[str, dict]) -> str:
    """results: {method: metrics.json content}. One row per SugarCrepe file, one column per method."""
    methods = list(results)
    width = max(18, *(len(m) + 2 for m in methods))
    head = f"{'':14}" + "".join(f"{m:>{width}}" for m in methods)
    lines = [head]
    files = [f for f in FILES if any(f in r["sugarcrepe"] for r in results.values())]

    def cell(r):
        return f"{100 * r['accuracy']:5.1f} [{100 * r['ci_low']:4.1f},{100 * r['ci_high']:5.1f}]" if r and r["n"] else "-"

    for f in files:
        lines.append(f"{f:14}" + "".join(f"{cell(results[m]['sugarcrepe'].get(f)):>{width}}" for m in methods))
    for part, title in (("seen", "seen combinations only:"), ("held_out", "held-out combinations only:")):
        if any(part in v for r in results.values() for v in r["sugarcrepe"].values()):
            lines.append(title)
            for f in files:
                cells = [cell(results[m]["sugarcrepe"].get(f, {}).get(part)) for m in methods]
                lines.append(f"  {f:12}" + "".join(f"{c:>{width}}" for c in cells))
    for key in ("i2t_R@1", "t2i_R@1", "i2t_R@5", "t2i_R@5", "chance_R@1"):
        if all(key in r.get("retrieval", {}) for r in results.values()):
            lines.append(f"{key:14}" + "".join(f"{100 * results[m]['retrieval'][key]:>{width}.1f}" for m in methods))
    if all(r.get("hard_positives") for r in results.values()):
        lines.append("hard positives (all items): original, augmented test accuracy (ATA), brittleness (lower is better):")
        for key in ("original", "augmented", "brittleness"):
            lines.append(f"  {key:12}" + "".join(f"{cell(results[m]['hard_positives']['all'][key]):>{width}}"
                                                 for m in methods))
    if all(r.get("abstraction") for r in results.values()):
        lines.append("abstraction levels, 2-way image->text (chance 50):")
        for level in next(iter(results.values()))["abstraction"]:
            lines.append(f"  {level:12}" + "".join(f"{cell(results[m]['abstraction'][level]['i2t']):>{width}}"
                                                   for m in methods))
    return "\n".join(lines)
