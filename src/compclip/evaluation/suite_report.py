"""The suite's report across methods: one table per benchmark (aggregates, then every file, with 95% CIs
and `n`; seen and held-out subsets beside all items), the blind text-only baseline as a column, plots, and
the published figures labelled as such. Markdown for the terminal and one self-contained HTML page (plots
embedded as PNG data, no script, no network)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from compclip.evaluation.report import headline_rows

PAPER = Path(__file__).with_name("paper_figures.json")


def _cell(v: dict | None) -> str:
    if not v or not v.get("n"):
        return "–"
    return f"{100 * v['accuracy']:.1f} [{100 * v['ci_low']:.1f}, {100 * v['ci_high']:.1f}]"


def _file_figures(f: dict) -> dict[str, dict]:
    """A file's figures that have CIs: accuracy (with seen/held-out), or R@k / top-k / outcome figures."""
    if "accuracy" in f:
        return {"": f, **{f" ({p})": f[p] for p in ("seen", "held_out") if p in f}}
    return {f" {k}": v for k, v in f.items() if isinstance(v, dict) and "accuracy" in v}


def benchmark_rows(results: dict[str, dict], bench: str) -> list[tuple[str, list[dict | None]]]:
    """(label, one figure per column) for one benchmark: aggregates first, then each file."""
    cols = list(results)
    suites = {c: results[c].get("suite", {}).get(bench, {}) for c in cols}
    rows = []
    agg_keys = list(dict.fromkeys(k for s in suites.values() for k in s.get("aggregate", {})))
    for k in agg_keys:
        rows.append((f"**{k}**", [suites[c].get("aggregate", {}).get(k) for c in cols]))
    files = list(dict.fromkeys(f for s in suites.values() for f in s.get("files", {})))
    for f in files:
        labels = list(dict.fromkeys(l for s in suites.values() if f in s.get("files", {})
                                    for l in _file_figures(s["files"][f])))
        for label in labels:
            rows.append((f"{f}{label}", [_file_figures(suites[c]["files"][f]).get(label)
                                         if f in suites[c].get("files", {}) else None for c in cols]))
    return rows


def _n(cells: list[dict | None]) -> str:
    ns = sorted({c["n"] for c in cells if c and c.get("n")})
    return "–" if not ns else "/".join(map(str, ns))


def training_rows(results: dict[str, dict]) -> list[str]:
    """How each column was trained (its metrics.json `training`): methods compared at unequal budgets say so."""
    cols = [c for c in results if results[c].get("training")]
    if not cols:
        return []
    t = {c: results[c]["training"] for c in cols}
    return ["| training | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols),
            "| fine-tuning steps | " + " | ".join(str(t[c].get("steps")) for c in cols) + " |",
            "| batch size | " + " | ".join(str(t[c].get("batch_size")) for c in cols) + " |",
            "| negative rules | " + " | ".join(", ".join(t[c].get("negative_rules") or []) or "–" for c in cols) + " |",
            ""]


def markdown(results: dict[str, dict], benches: list[str], preface: str = "") -> str:
    cols = list(results)
    out = ["# compclip: every method on every benchmark", "",
           "Accuracy (%) with bootstrap 95% CIs; `n` items per row (two numbers when a column scored fewer). "
           "`blind` never sees the image: a text-only score (evaluate.blind). Seen / held-out rows are subsets of "
           "the row above them.", ""]
    out += training_rows(results)
    heads = headline_rows(results)
    if heads:
        out += ["## Headline: one figure per benchmark", "", "| | n | " + " | ".join(cols) + " |",
                "|---|---|" + "---|" * len(cols)]
        out += [f"| {label} | {_n(cells)} | " + " | ".join(_cell(c) for c in cells) + " |" for label, cells in heads]
        out.append("")
    if preface:
        out += ["## The stage metrics (SugarCrepe files, retrieval, hard positives, abstraction)", "",
                "```", preface, "```", ""]
    for bench in benches:
        rows = benchmark_rows(results, bench)
        if not rows:
            continue
        out += [f"## {bench}", "", "| | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        out += [f"| {label} | {_n(cells)} | " + " | ".join(_cell(c) for c in cells) + " |" for label, cells in rows]
        skipped = {c: results[c]["suite"][bench].get("skipped", {}).get("by_reason")
                   for c in cols if results[c].get("suite", {}).get(bench, {}).get("skipped", {}).get("total")}
        if skipped:
            out += ["", f"Skipped items by reason: {json.dumps(skipped)}"]
        out.append("")
    paper = json.loads(PAPER.read_text())
    out += ["## Published figures (paper figures on the real benchmarks, not these data)", "",
            f"{paper['source']}.", "", "| | " + " | ".join(paper["columns"]) + " |", "|---|" + "---|" * len(paper["columns"])]
    out += [f"| {name} | " + " | ".join(str(row.get(c, "–")) for c in paper["columns"]) + " |"
            for name, row in paper["rows"].items()]
    out += [""] + [f"- {n}" for n in paper["notes"]] + [""]
    return "\n".join(out)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def plots(results: dict[str, dict], benches: list[str]) -> dict[str, object]:
    """Matplotlib figures: headline bars per benchmark with CI whiskers, accuracy by abstraction level, and
    brittleness vs Augmented Test Accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from compclip.evaluation.suite import BENCHMARKS

    cols = list(results)
    figs = {}
    heads = []
    for b in benches:  # the benchmark's own headline figure where it has one, else its first aggregate
        keys = list(next((r["suite"][b]["aggregate"] for r in results.values() if b in r.get("suite", {})), {}))
        if keys:
            heads.append((b, BENCHMARKS[b].headline if b in BENCHMARKS and BENCHMARKS[b].headline in keys else keys[0]))
    # about 0.17 in per bar, capped so the page does not need scrolling sideways
    fig, ax = plt.subplots(figsize=(min(16, max(9, 0.17 * len(heads) * len(cols) + 2)), 5))
    x, width = np.arange(len(heads)), 0.8 / max(1, len(cols))
    for i, c in enumerate(cols):
        vals = [results[c].get("suite", {}).get(b, {}).get("aggregate", {}).get(k) for b, k in heads]
        acc = np.array([100 * v["accuracy"] if v and v["n"] else np.nan for v in vals])
        err = np.array([[100 * (v["accuracy"] - v["ci_low"]) if v and v["n"] else 0 for v in vals],
                        [100 * (v["ci_high"] - v["accuracy"]) if v and v["n"] else 0 for v in vals]])
        ax.bar(x + (i - (len(cols) - 1) / 2) * width, acc, width, yerr=err, capsize=2, label=c)
    ax.set_xticks(x, [f"{b}\n{k}" for b, k in heads], fontsize=7)
    ax.set_ylabel("%")
    ax.set_ylim(0, 115)  # room above 100 for the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("Each benchmark's headline figure (95% CI)")
    ax.legend(ncol=len(cols), fontsize=7, loc="upper center")
    fig.tight_layout()
    figs["headline"] = fig

    levels = list(dict.fromkeys(lvl for r in results.values() for lvl in r.get("suite", {}).get("abstraction", {})
                                .get("files", {})))
    if levels:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for c in cols:
            files = results[c].get("suite", {}).get("abstraction", {}).get("files", {})
            if files:
                ys = [100 * files[lvl]["i2t"]["accuracy"] if lvl in files else np.nan for lvl in levels]
                lo = [100 * (files[lvl]["i2t"]["accuracy"] - files[lvl]["i2t"]["ci_low"]) if lvl in files else 0 for lvl in levels]
                hi = [100 * (files[lvl]["i2t"]["ci_high"] - files[lvl]["i2t"]["accuracy"]) if lvl in files else 0 for lvl in levels]
                ax.errorbar(levels, ys, yerr=[lo, hi], marker="o", capsize=3, label=c)
        ax.set_ylabel("2-way image->text %")
        ax.set_title("Accuracy by abstraction level (chance 50)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs["abstraction"] = fig

    hp = {c: results[c]["suite"]["hard-positives"]["aggregate"] for c in cols
          if results[c].get("suite", {}).get("hard-positives", {}).get("aggregate")}
    if hp:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for c, a in hp.items():
            ata, br = a["augmented"], a["brittleness"]
            ax.errorbar(100 * ata["accuracy"], 100 * br["accuracy"],
                        xerr=[[100 * (ata["accuracy"] - ata["ci_low"])], [100 * (ata["ci_high"] - ata["accuracy"])]],
                        yerr=[[100 * (br["accuracy"] - br["ci_low"])], [100 * (br["ci_high"] - br["accuracy"])]],
                        marker="o", capsize=3, label=c)
        ax.set_xlabel("Augmented Test Accuracy % (higher is better)")
        ax.set_ylabel("Brittleness % (lower is better)")
        ax.set_title("Hard positives: brittleness vs ATA (95% CI)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs["hard_positives"] = fig
    return figs


def html_page(md_tables: str, results: dict[str, dict], benches: list[str], figs: dict[str, object],
              extra_png: dict[str, bytes] | None = None) -> str:
    """One self-contained page: the same tables as the markdown, and the plots as embedded PNGs (figs, and
    extra_png: already rendered ones, such as compare.png's per-type bars)."""
    import matplotlib.pyplot as plt

    cols = list(results)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>compclip report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;"
             "margin:1em 0;font-size:13px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             " td:first-child{text-align:left} th{background:#f0f0f0} .agg td{font-weight:bold}"
             " img{max-width:100%;border:1px solid #ddd;margin:.5em 0}</style></head><body>",
             "<h1>compclip: every method on every benchmark</h1>",
             "<p>Accuracy (%) with bootstrap 95% CIs and <i>n</i> items per row. <b>blind</b> never sees the image "
             "(a text-only score). Seen / held-out rows are subsets of the row above them.</p>"]
    for name, fig in figs.items():
        parts.append(f"<h2>Plot: {html.escape(name)}</h2><img alt='{html.escape(name)} plot' "
                     f"src='data:image/png;base64,{_png(fig)}'>")
        plt.close(fig)
    for name, data in (extra_png or {}).items():
        parts.append(f"<h2>Plot: {html.escape(name)}</h2><img alt='{html.escape(name)} plot' "
                     f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    for bench in benches:
        rows = benchmark_rows(results, bench)
        if not rows:
            continue
        parts.append(f"<h2>{html.escape(bench)}</h2><table id='table-{html.escape(bench)}'><tr><th></th><th>n</th>"
                     + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>")
        for label, cells in rows:
            bold = label.startswith("**")
            parts.append(f"<tr{' class=agg' if bold else ''}><td>{html.escape(label.strip('*'))}</td><td>{_n(cells)}</td>"
                         + "".join(f"<td>{_cell(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    paper = json.loads(PAPER.read_text())
    parts.append("<h2>Published figures (paper figures on the real benchmarks, not these data)</h2>"
                 f"<p>{html.escape(paper['source'])}</p><table><tr><th></th>"
                 + "".join(f"<th>{html.escape(c)}</th>" for c in paper["columns"]) + "</tr>")
    for name, row in paper["rows"].items():
        parts.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{row.get(c, '–')}</td>" for c in paper["columns"])
                     + "</tr>")
    parts.append("</table><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in paper["notes"]) + "</ul></body></html>")
    return "\n".join(parts)
