"""The evaluate step: load a model, score the benchmarks, write metrics JSON and log to MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from compclip import tracking
from compclip.config import EvaluateConfig, MlflowConfig
from compclip.data.manifest import load_split
from compclip.data.records import load_json
from compclip.evaluation.evaluate import (group_means, score_abstraction, score_hard_positives, score_retrieval,
                                          score_sugarcrepe)
from compclip.evaluation.sugarcrepe import read_held_out, read_sugarcrepe
from compclip.evaluation.suite import CI, HEADLINE, evaluate_benchmark

if TYPE_CHECKING:
    from compclip.evaluation.encode import EmbeddingCache


def evaluate_sugarcrepe(model: str, data: Path, images: Path, device: str = "auto", batch_size: int = 256,
                        bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
                        cache: EmbeddingCache | None = None) -> dict:
    from compclip.evaluation.encode import EmbeddingCache
    from compclip.models.factory import load_model, resolve_device

    dev = resolve_device(device)
    cache = cache or EmbeddingCache(load_model(model, dev), dev, batch_size)
    per_file = score_sugarcrepe(cache, read_sugarcrepe(data, images), bootstrap_samples, confidence, seed,
                                read_held_out(data, images))
    return {"model": model, "sugarcrepe": per_file, "sugarcrepe_groups": group_means(per_file),
            "skipped_images": cache.skipped()}


def run_evaluation(model: str, cfg: EvaluateConfig, manifest: Path, seed: int, device: str = "auto",
                   mlflow_cfg: MlflowConfig | None = None, run_id: str | None = None,
                   benchmarks: Path | None = None, out_dir: Path | None = None, training: dict | None = None) -> dict:
    """All metrics of one model; with `benchmarks` (the benchmarks stage's folder) also hard-positive ATA and
    brittleness and CLEAR GLASS abstraction levels. Writes out_dir (default cfg.out_dir)/metrics.json, with
    `training` (how the model was trained: steps, batch size, negatives) copied in for the comparison."""
    # here, not at the top: blind and register import this module and never load a model (open_clip is slow to import)
    from compclip.evaluation.encode import EmbeddingCache
    from compclip.evaluation.scorers import ModelScorer
    from compclip.models.factory import load_model, resolve_device

    dev = resolve_device(device)
    cache = EmbeddingCache(load_model(model, dev), dev, cfg.batch_size)
    results = evaluate_sugarcrepe(model, cfg.sugarcrepe.data, cfg.sugarcrepe.images,
                                  bootstrap_samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=seed,
                                  cache=cache)
    results["retrieval"] = score_retrieval(cache, load_split(manifest, "test"), cfg.recall_at)
    if benchmarks is not None:
        ci = (cfg.bootstrap_samples, cfg.confidence, seed)
        results["hard_positives"] = score_hard_positives(cache, _load(Path(benchmarks) / "hard_positives.json"), *ci)
        results["abstraction"] = score_abstraction(cache, _load(Path(benchmarks) / "abstraction.json"), *ci)
    out = Path(out_dir or cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results["suite"] = run_suite(ModelScorer(cache, model), cfg, seed, out / "suite")
    # every image that could not be read, by reason: its items were left out of the scores above
    results["skipped_images"] = cache.skipped()
    if training is not None:
        results["training"] = training
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "headline.json").write_text(json.dumps(headline(results), indent=2) + "\n")
    if mlflow_cfg is not None:
        _log(results, out / "metrics.json", mlflow_cfg, run_id)
    return results


def run_suite(scorer, cfg: EvaluateConfig, seed: int, out: Path) -> dict:
    """Every benchmark of cfg.suite: full results and per-item scores in out/<benchmark>.json (and
    .scores.jsonl); returned without the per-file detail a table does not need (it is in those files)."""
    ci = CI(cfg.bootstrap_samples, cfg.confidence, seed)
    results = {}
    for entry in cfg.suite:
        options = {"seed": seed} if entry.benchmark.endswith("-order") else {}
        r = evaluate_benchmark(entry.benchmark, entry.data, entry.images, scorer, ci,
                               out / f"{entry.benchmark}.json", tuple(cfg.recall_at), **options)
        results[entry.benchmark] = {k: r[k] for k in ("aggregate", "files", "skipped", "notes", "not_applicable",
                                                       "items_scored") if k in r}
        if "skipped" in results[entry.benchmark]:
            results[entry.benchmark]["skipped"] = {k: v for k, v in r["skipped"].items() if k != "examples"}
    return results


def headline(results: dict) -> dict:
    out = {}
    for bench, keys in HEADLINE.items():
        agg = results.get("suite", {}).get(bench, {}).get("aggregate", {})
        for k in keys:
            if k in agg and agg[k]["n"]:
                out[f"{bench}/{k}"] = round(agg[k]["accuracy"], 4)
    return out


def _load(path: Path) -> list[dict]:
    return load_json(path, missing="missing; run the benchmarks stage (dvc repro benchmarks)")


def _log(results: dict, path: Path, mlflow_cfg: MlflowConfig, run_id: str | None) -> None:
    with tracking.run(mlflow_cfg, "evaluate", run_id) as run:
        flat = {f"eval/sugarcrepe/{k}": v["accuracy"] for k, v in results["sugarcrepe"].items()}
        for part in ("held_out", "seen"):
            flat |= {f"eval/sugarcrepe_{part}/{k}": v[part]["accuracy"]
                     for k, v in results["sugarcrepe"].items() if part in v and v[part]["n"]}
        flat |= {f"eval/sugarcrepe_{k}": v for k, v in results["sugarcrepe_groups"].items()}
        flat |= {f"eval/retrieval/{k}": v for k, v in results["retrieval"].items() if isinstance(v, (int, float))}
        flat |= {f"eval/hard_positives/{src}/{k}": v["accuracy"] for src, d in results.get("hard_positives", {}).items()
                 for k, v in d.items()}
        flat |= {f"eval/abstraction/{lvl}/{k}": v["accuracy"] for lvl, d in results.get("abstraction", {}).items()
                 for k, v in d.items() if v["n"]}
        flat |= {f"eval/skipped_images/{k}": v for k, v in results["skipped_images"].items()}
        flat |= {f"eval/suite/{k}": v for k, v in headline(results).items()}
        flat |= {f"eval/over_context/{k}/{count}": n for k, v in results["sugarcrepe"].items()
                 for count, n in v.get("over_context", {}).items()}  # texts the tokenizer cut, and ties it made
        run.log_metrics(flat)
        run.log_artifact(path, artifact_path="evaluation")


def run_blind(cfg: EvaluateConfig, manifest: Path, seed: int, out_dir: Path) -> dict:
    """The text-only baseline on every benchmark it can attempt (evaluation/text_only.py), written like a
    method's evaluation: out_dir/metrics.json, headline.json and suite/."""
    from compclip.evaluation.text_only import blind_scorer

    if cfg.blind is None:  # switched off: an empty result, so compare shows no blind column
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "suite").mkdir(exist_ok=True)
        (Path(out_dir) / "metrics.json").write_text(json.dumps({"disabled": True, "suite": {}}) + "\n")
        (Path(out_dir) / "headline.json").write_text("{}\n")
        return {"disabled": True}
    corpus = load_split(manifest, cfg.blind.corpus_split)["caption"].tolist()
    scorer = blind_scorer(cfg.blind.scorer, corpus)
    results = {"model": scorer.name, "corpus": {"split": cfg.blind.corpus_split, "captions": len(corpus)},
               "suite": run_suite(scorer, cfg, seed, Path(out_dir) / "suite")}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    (Path(out_dir) / "headline.json").write_text(json.dumps(headline(results), indent=2) + "\n")
    return {"model": scorer.name, "headline": headline(results)}
