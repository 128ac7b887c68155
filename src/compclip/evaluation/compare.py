"""Every method side by side: one table (markdown and JSON, accuracy with 95% CIs) and one plot (PNG;
`dvc plots` HTML needs a CDN, a PNG does not)."""

from __future__ import annotations

import json
from pathlib import Path

from compclip.errors import UserError
from compclip.evaluation import suite_report
from compclip.evaluation.report import headline_rows, sugarcrepe_table
from compclip.evaluation.sugarcrepe import FILES


def rows(results: dict[str, dict]) -> list[dict]:
    """Long format: one row per (method, metric), with its CI where it has one."""
    out = []
    for method, r in results.items():
        for f, v in r["sugarcrepe"].items():
            out.append({"method": method, "metric": f"sugarcrepe/{f}", **_cell(v)})
            for part in ("seen", "held_out"):
                if part in v and v[part]["n"]:
                    out.append({"method": method, "metric": f"sugarcrepe_{part}/{f}", **_cell(v[part])})
        for k, v in r.get("retrieval", {}).items():
            if "@" in k:
                out.append({"method": method, "metric": f"retrieval/{k}", "value": v})
        for src, d in r.get("hard_positives", {}).items():
            for k, v in d.items():
                out.append({"method": method, "metric": f"hard_positives/{src}/{k}", **_cell(v)})
        for level, d in r.get("abstraction", {}).items():
            for k, v in d.items():
                out.append({"method": method, "metric": f"abstraction/{level}/{k}", **_cell(v)})
    return out


def _cell(v: dict) -> dict:
    return {"value": v["accuracy"], "ci_low": v["ci_low"], "ci_high": v["ci_high"], "n": v["n"]}


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(results)
    panels = [("SugarCrepe-format accuracy", [f for f in FILES if f in next(iter(results.values()))["sugarcrepe"]],
               lambda r, f: r["sugarcrepe"][f])]
    if all(r.get("abstraction") for r in results.values()):
        levels = list(next(iter(results.values()))["abstraction"])
        panels.append(("Abstraction level, 2-way i2t", levels, lambda r, lvl: r["abstraction"][lvl]["i2t"]))
    if all(r.get("hard_positives") for r in results.values()):
        panels.append(("Hard positives (all items)", ["original", "augmented", "brittleness"],
                       lambda r, k: r["hard_positives"]["all"][k]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 1.4 * len(methods) * 1.6), 3.6 * len(panels)))
    axes = np.atleast_1d(axes)
    width = 0.8 / len(methods)
    for ax, (title, keys, get) in zip(axes, panels):
        x = np.arange(len(keys))
        for i, m in enumerate(methods):
            vals = [get(results[m], k) for k in keys]
            acc = np.array([100 * v["accuracy"] for v in vals])
            err = np.array([[100 * (v["accuracy"] - v["ci_low"]) for v in vals],
                            [100 * (v["ci_high"] - v["accuracy"]) for v in vals]])
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, acc, width, yerr=err, capsize=2, label=m)
        ax.set_xticks(x, keys, rotation=0)
        ax.set_ylabel("%")
        ax.set_title(title + " (95% CI)")
        ax.set_ylim(0, 100)
    axes[0].legend(ncol=min(6, len(methods)), fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def suite_rows(results: dict[str, dict]) -> list[dict]:
    """compare.json's rows for the suite: one per (column, benchmark, figure) with its CI."""
    out = []
    for column, r in results.items():
        for bench, s in r.get("suite", {}).items():
            for k, v in s.get("aggregate", {}).items():
                out.append({"method": column, "metric": f"{bench}/{k}", **_cell(v)})
    return out


def headline_plot_rows(columns: dict[str, dict]) -> list[dict]:
    """The headline figures as bars for `dvc plots diff` (percent; one label per column and figure)."""
    return [{"label": f"{figure} · {column}", "figure": figure, "column": column,
             "accuracy": round(100 * cell["accuracy"], 2), "ci_low": round(100 * cell["ci_low"], 2),
             "ci_high": round(100 * cell["ci_high"], 2), "n": cell["n"]}
            for figure, cells in headline_rows(columns) for column, cell in zip(columns, cells) if cell and cell["n"]]


def compare(metrics: dict[str, Path], out_dir: Path, blind: Path | None = None, mlflow_cfg=None) -> dict:
    """metrics: {method: metrics.json}; blind: the blind baseline's metrics.json, shown as a column."""
    missing = [str(p) for p in metrics.values() if not Path(p).exists()]
    if missing:
        raise UserError(f"compare: no metrics for {missing}; run `dvc repro` for those methods")
    results = {m: json.loads(Path(p).read_text()) for m, p in metrics.items()}
    columns = dict(results)
    if blind is not None and Path(blind).exists() and json.loads(Path(blind).read_text()).get("suite"):
        columns["blind"] = json.loads(Path(blind).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = sugarcrepe_table(results)
    benches = list(dict.fromkeys(b for r in columns.values() for b in r.get("suite", {})))
    md = suite_report.markdown(columns, benches, preface=table) if benches else "```\n" + table + "\n```\n"
    (out / "compare.md").write_text(md)
    plot(results, out / "compare.png")
    figs = suite_report.plots(columns, benches) if benches else {}
    (out / "compare.html").write_text(suite_report.html_page(
        md, columns, benches, figs, {"per type (SugarCrepe files), abstraction, hard positives": (out / "compare.png").read_bytes()}))
    (out / "compare.json").write_text(json.dumps(rows(results) + suite_rows(columns), indent=1) + "\n")
    (out / "headline_plot.json").write_text(json.dumps(headline_plot_rows(columns), indent=1) + "\n")
    if mlflow_cfg is not None:
        from compclip import tracking

        with tracking.run(mlflow_cfg, "compare") as run:
            for name in ("compare.md", "compare.html", "compare.png", "compare.json", "headline_plot.json"):
                run.log_artifact(out / name, artifact_path="report")
    print(table)
    return {"methods": list(results), "columns": list(columns), "table": str(out / "compare.md"),
            "headline_plot": str(out / "headline_plot.json"),
            "html": str(out / "compare.html"), "plot": str(out / "compare.png")}
