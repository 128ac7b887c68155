"""`compclip evaluate BENCHMARK`: read a benchmark's released files, score them (a model, or a blind text-only
baseline), and summarize with the benchmark's own metrics, bootstrap 95% CIs and `n` everywhere.

Every run writes two files: the result JSON (`--out`) and the per-item scores beside it
(`<out stem>.scores.jsonl`: a header line, then one line per item), from which `summarize_scores`
recomputes every figure without the model.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from compclip import names
from compclip.data.records import HELD_OUT_FILE, join_under, load_json
from compclip.evaluation.items import Choice, Loaded, skip_summary
from compclip.evaluation.metrics import (accuracy_with_ci, correct_choice, macro_with_ci, mean_of_files_with_ci,
                                         rank_of_true)
from compclip.evaluation.readers import aro, crepe, karpathy, valse, vlchecklist, zeroshot
from compclip.evaluation.readers.demo import read_abstraction, read_hard_positives
from compclip.evaluation.sugarcrepe import GROUPS, read_sugarcrepe_items


@dataclass(frozen=True)
class CI:
    samples: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # choice | ranking | hard_positives | abstraction | retrieval | zeroshot
    read: Callable[..., Loaded]
    headline: str  # the aggregate a person compares (the key in `aggregate`)


BENCHMARKS = {b.name: b for b in [
    Benchmark("sugarcrepe", "choice", read_sugarcrepe_items, "mean"),
    Benchmark("aro-relation", "choice", aro.read_vg_relation, "macro"),
    Benchmark("aro-attribution", "choice", aro.read_vg_attribution, "macro"),
    Benchmark("coco-order", "choice", karpathy.read_order, "precision@1"),
    Benchmark("flickr-order", "choice", karpathy.read_order, "precision@1"),
    Benchmark("valse", "choice", valse.read_valse, "avg"),
    Benchmark("vl-checklist", "choice", vlchecklist.read_vl_checklist, "mean"),
    Benchmark("crepe", "ranking", crepe.read_crepe, "R@1"),
    Benchmark("hard-positives", "hard_positives", read_hard_positives, "augmented"),
    Benchmark("abstraction", "abstraction", read_abstraction, "i2t"),
    Benchmark("retrieval", "retrieval", karpathy.read_karpathy, "R@1"),
    Benchmark("zeroshot", "zeroshot", zeroshot.read_zeroshot, "top1"),
]}
assert tuple(BENCHMARKS) == names.BENCHMARKS, "names.BENCHMARKS and the suite disagree"
# The few figures a person compares between experiments (headline.json, `dvc metrics diff`, the report's first
# table): each benchmark's own aggregate, two where one does not say enough.
HEADLINE = {"sugarcrepe": ("mean", "swap"), "aro-relation": ("macro",), "aro-attribution": ("macro",),
            "coco-order": ("precision@1",), "flickr-order": ("precision@1",), "valse": ("avg",),
            "vl-checklist": ("mean",), "crepe": ("R@1",), "hard-positives": ("augmented", "brittleness"),
            "abstraction": ("i2t",), "retrieval": ("R@1",), "zeroshot": ("top1",)}
BLIND_KINDS = {"choice", "ranking", "hard_positives", "abstraction"}  # what a text-only score can attempt


def score(bench: Benchmark, loaded: Loaded, scorer) -> list[dict]:
    if bench.kind in ("choice", "ranking", "hard_positives"):
        return scorer.choices(loaded, loaded.items)
    return getattr(scorer, bench.kind)(loaded)


# ---- summaries: rows -> figures ---------------------------------------------------------------------------

def _by(rows: list[dict], key: str) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return dict(out)


def _correct(rows: list[dict]) -> np.ndarray:
    return np.array([correct_choice(r["scores"]) for r in rows], dtype=bool)


def _ranks(rows: list[dict]) -> np.ndarray:
    return np.array([rank_of_true(r["scores"]) for r in rows])


def _choice_file(rows: list[dict], ci: CI) -> dict:
    correct = _correct(rows)
    out = accuracy_with_ci(correct, ci.samples, ci.confidence, ci.seed)
    groups = _by(rows, "group")
    if len(groups) > 1 or "" not in groups:
        out["groups"] = {g: {"accuracy": float(_correct(rs).mean()), "n": len(rs)} for g, rs in sorted(groups.items())}
    for part in ("seen", "held_out"):
        sub = [r for r in rows if r.get("subset") == part]
        if sub:
            out[part] = accuracy_with_ci(_correct(sub), ci.samples, ci.confidence, ci.seed)
    if "over_context" in rows[0]:
        out["over_context"] = {"items": sum(r["over_context"] for r in rows),
                               "tied_by_cut": sum(r["tied_by_cut"] for r in rows)}
    return out


def _choice_aggregate(name: str, files: dict[str, list[dict]], ci: CI) -> dict:
    correct = {f: _correct(rs) for f, rs in files.items()}
    args = (ci.samples, ci.confidence, ci.seed)
    if name == "sugarcrepe":
        agg = {"mean": mean_of_files_with_ci(correct, *args)}
        for g, members in GROUPS.items():
            if all(m in correct for m in members):
                agg[g] = mean_of_files_with_ci({m: correct[m] for m in members}, *args)
        return agg
    if name.startswith("aro-"):
        rows = [r for rs in files.values() for r in rs]
        groups = np.array([r["group"] for r in rows])
        keep = aro.macro_groups(name, Counter(groups.tolist()))
        return {"macro": macro_with_ci(_correct(rows), groups, keep, *args),
                "micro": accuracy_with_ci(_correct(rows), *args)}
    if name.endswith("-order"):
        return {"precision@1": accuracy_with_ci(np.concatenate(list(correct.values())), *args)}
    if name == "valse":
        agg = {"avg": mean_of_files_with_ci(correct, *args)}
        for cat, pieces in valse.CATEGORIES.items():
            present = {p: correct[p] for p in pieces if p in correct}
            if present:
                agg[cat] = mean_of_files_with_ci(present, *args)
        return agg
    if name == "vl-checklist":
        category = {f: rs[0]["group"] for f, rs in files.items()}
        cats = sorted(set(category.values()))
        agg = {c: mean_of_files_with_ci({f: v for f, v in correct.items() if category[f] == c}, *args) for c in cats}
        per_cat = Counter(category.values())
        agg["mean"] = mean_of_files_with_ci(correct, *args,
                                            weights={f: 1 / per_cat[category[f]] for f in correct})
        return agg
    return {"mean": mean_of_files_with_ci(correct, *args)}


def _ranking_file(rows: list[dict], ci: CI) -> dict:
    ranks = _ranks(rows)
    out = {f"R@{k}": accuracy_with_ci(ranks <= k, ci.samples, ci.confidence, ci.seed) for k in (1, 3, 5, 10)}
    out |= {"mean_rank": float(ranks.mean()), "median_rank": float(np.median(ranks)),
            "options": float(np.mean([len(r["scores"]) for r in rows])), "n": len(rows)}
    if "over_context" in rows[0]:
        out["over_context"] = {"items": sum(r["over_context"] for r in rows),
                               "tied_by_cut": sum(r["tied_by_cut"] for r in rows)}
    return out


def _hard_positive_outcomes(rows: list[dict]) -> dict[str, np.ndarray]:
    """Kamath et al.: scores are [s(c), s(c_n), s(c_p)]. Original accuracy s(c) > s(c_n); Augmented Test
    Accuracy s(c_n) below both; brittleness: c_n lands between c and c_p (either order)."""
    s = np.array([r["scores"] for r in rows])
    c, n, p = s[:, 0], s[:, 1], s[:, 2]
    return {"original": c > n, "augmented": (n < p) & (n < c),
            "brittleness": ((c > n) & (n > p)) | ((p > n) & (n > c))}


def summarize(name: str, rows: list[dict], ci: CI, recall_at=(1, 5, 10)) -> dict:
    """Every figure of a benchmark from its per-item rows (as `score` made them, or as read back)."""
    kind = BENCHMARKS[name].kind
    args = (ci.samples, ci.confidence, ci.seed)
    if not rows:
        return {"files": {}, "aggregate": {}}
    if kind == "choice":
        files = _by(rows, "file")
        return {"files": {f: _choice_file(rs, ci) for f, rs in sorted(files.items())},
                "aggregate": _choice_aggregate(name, files, ci)}
    if kind == "ranking":
        files = _by(rows, "file")
        return {"files": {f: _ranking_file(rs, ci) for f, rs in sorted(files.items())},
                "aggregate": {"R@1": mean_of_files_with_ci({f: _ranks(rs) <= 1 for f, rs in files.items()}, *args)}}
    if kind == "hard_positives":
        out = {}
        for part, rs in [("all", rows), *sorted(_by(rows, "group").items())]:
            out[part] = {k: accuracy_with_ci(v, *args) for k, v in _hard_positive_outcomes(rs).items()}
        return {"files": out, "aggregate": dict(out["all"])}
    if kind == "abstraction":
        levels = {}
        for level, rs in _by(rows, "group").items():
            s = np.array([r["scores"] for r in rs])
            levels[level] = {"i2t": accuracy_with_ci(s[:, 0] > s[:, 1], *args),
                             "t2i": accuracy_with_ci(s[:, 0] > s[:, 2], *args)}
        every = np.array([r["scores"] for r in rows])
        return {"files": levels, "aggregate": {"i2t": accuracy_with_ci(every[:, 0] > every[:, 1], *args),
                                               "t2i": accuracy_with_ci(every[:, 0] > every[:, 2], *args)}}
    if kind == "retrieval":
        files = {}
        for f, rs in sorted(_by(rows, "file").items()):
            ranks = {d: np.array([r["rank"] for r in rs if r["direction"] == d]) for d in ("i2t", "t2i")}
            files[f] = {f"{d}_R@{k}": accuracy_with_ci(ranks[d] <= k, *args) for d in ("i2t", "t2i") for k in recall_at}
            files[f] |= {"images": int(ranks["i2t"].size), "captions": int(ranks["t2i"].size),
                         "chance_R@1": 1 / max(1, ranks["i2t"].size)}
        hits = {f"{f}/{d}": np.array([r["rank"] <= 1 for r in rs if r["direction"] == d])
                for f, rs in _by(rows, "file").items() for d in ("i2t", "t2i")}
        return {"files": files, "aggregate": {"R@1": mean_of_files_with_ci(hits, *args)}}
    if kind == "zeroshot":
        s = np.array([r["scores"] for r in rows])
        labels = np.array([r["label"] for r in rows])
        order = np.argsort(-s, axis=1, kind="stable")
        top = {k: (order[:, :k] == labels[:, None]).any(1) for k in (1, 5) if k <= s.shape[1]}
        figures = {f"top{k}": accuracy_with_ci(v, *args) for k, v in top.items()}
        figures |= {"classes": int(s.shape[1]), "chance_top1": 1 / s.shape[1]}
        return {"files": {rows[0]["file"]: figures}, "aggregate": {k: v for k, v in figures.items() if k.startswith("top")}}
    raise ValueError(kind)


# ---- one run ----------------------------------------------------------------------------------------------

def evaluate_benchmark(name: str, data: Path, images: Path | None, scorer, ci: CI = CI(), out: Path | None = None,
                       recall_at=(1, 5, 10), **read_options) -> dict:
    bench = BENCHMARKS[name]
    if scorer.blind and bench.kind not in BLIND_KINDS:
        result = {"benchmark": name, "model": scorer.name, "not_applicable": "a text-only score cannot do this task"}
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(result, indent=1) + "\n")
        return result
    loaded = bench.read(Path(data), Path(images) if images is not None else None, **read_options)
    _mark_held_out(loaded, Path(data), images)
    rows = score(bench, loaded, scorer)
    result = {"benchmark": name, "model": scorer.name, "data": str(data), "images": str(images),
              **summarize(name, rows, ci, recall_at), "items_scored": len(rows),
              "skipped": skip_summary(loaded.skipped), **({"notes": loaded.notes} if loaded.notes else {}),
              "ci": {"samples": ci.samples, "confidence": ci.confidence, "seed": ci.seed}}
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        scores = scores_path(out)
        with open(scores, "w") as f:
            f.write(json.dumps({"benchmark": name, "model": scorer.name, "recall_at": list(recall_at)}) + "\n")
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
        result["scores_file"] = str(scores)
        out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _mark_held_out(loaded: Loaded, data: Path, images: Path | None) -> None:
    """compclip's addition to a release folder (the shapes world writes it): the images showing held-out
    combinations, paths relative to the images folder. Items get subset held_out / seen."""
    path = (data if data.is_dir() else data.parent) / HELD_OUT_FILE
    if images is None or not path.exists():
        return
    held = {join_under(Path(images), name) for name in load_json(path)}
    loaded.items = [replace(it, subset="held_out" if it.image.path in held else "seen")
                    if isinstance(it, Choice) and not it.subset else it for it in loaded.items]


def scores_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).stem + ".scores.jsonl")


def summarize_scores(path: Path, ci: CI = CI()) -> dict:
    """Recompute a run's figures from its per-item scores file alone (no model, no images)."""
    with open(path) as f:
        header = json.loads(f.readline())
        rows = [json.loads(line) for line in f if line.strip()]
    return {"benchmark": header["benchmark"], "model": header["model"],
            **summarize(header["benchmark"], rows, ci, tuple(header.get("recall_at", (1, 5, 10))))}
