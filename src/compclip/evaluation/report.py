"""Plain-text tables of evaluation results, for the terminal and the demo. Every row says its `n`: all
items first, then the seen and held-out subsets side by side, so a subset is never read without the whole."""

from __future__ import annotations

from compclip.evaluation.sugarcrepe import FILES


def _n(cells: list[dict | None]) -> str:
    """The row's item count; methods scored on different counts (skipped images) show each."""
    ns = sorted({c["n"] for c in cells if c})
    return "-" if not ns else str(ns[0]) if len(ns) == 1 else "/".join(map(str, ns))


def sugarcrepe_table(results: dict[str, dict]) -> str:
    """results: {method: metrics.json content}. One row per SugarCrepe file, one column per method."""
    methods = list(results)
    width = max(18, *(len(m) + 2 for m in methods))
    lines = [f"{'':16}{'n':>7}" + "".join(f"{m:>{width}}" for m in methods)]
    files = [f for f in FILES if any(f in r["sugarcrepe"] for r in results.values())]

    def cell(r):
        return f"{100 * r['accuracy']:5.1f} [{100 * r['ci_low']:4.1f},{100 * r['ci_high']:5.1f}]" if r and r["n"] else "-"

    def row(label, cells):
        lines.append(f"{label:16}{_n(cells):>7}" + "".join(f"{cell(c):>{width}}" for c in cells))

    lines.append("all items:")
    for f in files:
        row(f"  {f}", [results[m]["sugarcrepe"].get(f) for m in methods])
    for part, title in (("seen", "seen combinations (subset of all):"),
                        ("held_out", "held-out combinations (the rest):")):
        if any(part in v for r in results.values() for v in r["sugarcrepe"].values()):
            lines.append(title)
            for f in files:
                row(f"  {f}", [results[m]["sugarcrepe"].get(f, {}).get(part) for m in methods])
    if all("retrieval" in r for r in results.values()):
        first = next(iter(results.values()))["retrieval"]
        lines.append(f"retrieval ({first.get('images', '?')} images, {first.get('captions', '?')} captions):")
        for key in ("i2t_R@1", "t2i_R@1", "i2t_R@5", "t2i_R@5", "chance_R@1"):
            if all(key in r["retrieval"] for r in results.values()):
                lines.append(f"  {key:14}{'':>7}" + "".join(f"{100 * results[m]['retrieval'][key]:>{width}.1f}"
                                                          for m in methods))
    if all(r.get("hard_positives") for r in results.values()):
        lines.append("hard positives (all items): original, augmented test accuracy (ATA), brittleness (lower is better):")
        for key in ("original", "augmented", "brittleness"):
            row(f"  {key}", [results[m]["hard_positives"]["all"][key] for m in methods])
    if all(r.get("abstraction") for r in results.values()):
        lines.append("abstraction levels, 2-way image->text (chance 50):")
        for level in next(iter(results.values()))["abstraction"]:
            row(f"  {level}", [results[m]["abstraction"][level]["i2t"] for m in methods])
    skipped = {m: r.get("skipped_images") for m in methods if (r := results[m]).get("skipped_images")}
    if skipped:
        lines.append(f"images left out (unreadable), by reason: {skipped}")
    return "\n".join(lines)


def _figure(v: dict) -> str:
    return f"{100 * v['accuracy']:5.1f} [{100 * v['ci_low']:4.1f},{100 * v['ci_high']:5.1f}] n={v['n']}"


def result_lines(result: dict) -> list[str]:
    """One benchmark run (compclip evaluate BENCHMARK) for the terminal: aggregates, then every file."""
    if "not_applicable" in result:
        return [f"{result['benchmark']} ({result['model']}): {result['not_applicable']}"]
    lines = [f"{result['benchmark']} ({result['model']}), 95% CIs:"]
    for k, v in result.get("aggregate", {}).items():
        lines.append(f"  {k:28}{_figure(v)}")
    for f, v in result.get("files", {}).items():
        shown = {k: x for k, x in v.items() if isinstance(x, dict) and "accuracy" in x}
        if "accuracy" in v:
            shown = {"accuracy": v, **{p: v[p] for p in ("seen", "held_out") if p in v}}
        for k, x in shown.items():
            lines.append(f"  {f + ' ' + k:28}{_figure(x)}")
    skipped = result.get("skipped", {})
    if skipped.get("total"):
        lines.append(f"  skipped {skipped['total']} items: {skipped['by_reason']} (examples in the JSON)")
    return lines


def headline_rows(columns: dict[str, dict]) -> list[tuple[str, list[dict | None]]]:
    """(benchmark/figure, one figure per column) for the HEADLINE figures any column has."""
    from compclip.evaluation.suite import HEADLINE

    rows = []
    for bench, keys in HEADLINE.items():
        for k in keys:
            cells = [c.get("suite", {}).get(bench, {}).get("aggregate", {}).get(k) for c in columns.values()]
            if any(cells):
                rows.append((f"{bench}/{k}", cells))
    return rows


def _ci_cell(c: dict | None) -> str:
    return f"{100 * c['accuracy']:5.1f} [{100 * c['ci_low']:4.1f},{100 * c['ci_high']:5.1f}]" if c and c["n"] else "-"


def headline_table(columns: dict[str, dict]) -> str:
    """One row per headline figure (suite aggregates), one column per method (and the blind baseline)."""
    names = list(columns)
    width = max(18, *(len(m) + 2 for m in names))
    lines = [f"{'':28}{'n':>7}" + "".join(f"{m:>{width}}" for m in names)]
    for label, cells in headline_rows(columns):
        lines.append(f"{label:28}{_n(cells):>7}" + "".join(f"{_ci_cell(c):>{width}}" for c in cells))
    return "\n".join(lines)
