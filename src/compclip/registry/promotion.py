"""The register step and the hand-driven commands: register every evaluated model, put the gate between
the challenger and the champion, promote by hand (with the gate, or forced with a reason), roll back."""

from __future__ import annotations

import getpass
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from compclip import tracking
from compclip.config import MlflowConfig, Params, RegisterConfig
from compclip.data.records import load_json
from compclip.errors import UserError
from compclip.evaluation.run import run_evaluation
from compclip.provenance import provenance
from compclip.registry.gate import gate
from compclip.registry.headline import from_tags, headline, to_tags
from compclip.registry.lineage import benchmark_digest, commit_tags, stage_lineage
from compclip.registry.store import CHALLENGER, CHAMPION, Registry

log = logging.getLogger(__name__)
DIGEST_TAG = "benchmark_digest"
RUN_FIRST = "missing (run `dvc repro` up to evaluate first)"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_run(p: Params, lock: Path = Path("dvc.lock")) -> dict:
    """Register every method's model (once per training run), give the best (or register.candidate) the
    challenger alias, and crown it champion if it passes the gate. Writes register.out_dir/decision.json."""
    cfg = p.register_
    if cfg is None:
        raise UserError("params.yaml has no `register` section")
    out = Path(cfg.out_dir) / "decision.json"
    if not tracking.enabled(p.mlflow):  # e.g. a GPU machine without MLflow: the pipeline still completes
        decision = {"model": cfg.model_name, "time_utc": _now(), "status": "skipped", "accepted": False,
                    "reason": "MLflow tracking is off (mlflow.enabled: false or COMPCLIP_MLFLOW=0): no model was "
                              "logged, nothing to register", "provenance": provenance(_params(p))}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(decision, indent=2) + "\n")
        print(f"register {cfg.model_name}: skipped: {decision['reason']}")
        return decision
    reg = Registry(cfg.model_name, p.mlflow)
    manifest = Path(p.ingest.out_dir) / "manifest.parquet"
    digest = benchmark_digest(p.evaluate, manifest)
    commit = commit_tags()
    entries = {}
    for method in p.methods:
        metrics = load_json(Path(p.evaluate.out_dir) / method / "metrics.json", missing=RUN_FIRST)
        summary = load_json(Path(p.train.out_dir) / method / "summary.json", missing=RUN_FIRST)
        if not summary.get("run_id"):
            raise UserError(f"{method}: trained with MLflow tracking off (no run id in summary.json): its model "
                            "was never logged, so it cannot be registered; retrain with mlflow.enabled: true")
        h = headline(metrics)
        version = reg.register(summary["run_id"], {"method": method, **commit, **stage_lineage(lock, method)})
        reg.tag(version.version, {DIGEST_TAG: digest, **to_tags(h)})  # the latest scores on this benchmark
        entries[method] = {"version": str(version.version), "headline": h}
    method = max(entries, key=lambda m: entries[m]["headline"]["compositional"]) if cfg.candidate == "best" \
        else cfg.candidate
    challenger = {"method": method, **entries[method]}
    reg.set_alias(CHALLENGER, challenger["version"])
    decision = _decide(reg, challenger, entries, cfg, digest, p)
    decision["registered"] = {m: e["version"] for m, e in entries.items()}
    decision["provenance"] = provenance(_params(p))
    _record(reg, decision, out)
    return decision


def _params(p: Params) -> dict:
    """The params the decision depends on (section by section: a traced process records what it reads)."""
    return {"methods": p.methods, "register": p.register_.model_dump(mode="json"),
            "evaluate": p.evaluate.model_dump(mode="json")}


def _decide(reg: Registry, challenger: dict, entries: dict, cfg: RegisterConfig, digest: str, p: Params) -> dict:
    champion = reg.alias(CHAMPION)
    base = {"model": reg.name, "time_utc": _now(), "challenger": challenger, "forced": False,
            "thresholds": cfg.model_dump(mode="json", include={"min_gain", "max_r1_drop", "max_zeroshot_drop"})}
    if champion is not None and str(champion.version) == str(challenger["version"]):
        return {**base, "accepted": False, "status": "unchanged", "reference": None, "checks": [],
                "reason": f"version {challenger['version']} ({challenger['method']}) is already the champion"}
    if champion is None:
        if cfg.baseline not in entries or cfg.baseline == challenger["method"]:
            why = ("is the challenger itself" if cfg.baseline == challenger["method"] else "was not evaluated in this run")
            return {**base, "accepted": False, "status": "refused", "reference": None, "checks": [],
                    "reason": f"no champion yet, and the baseline method {cfg.baseline!r} {why}; "
                              "promote by hand with `compclip promote --force --reason ...`"}
        reference = {"kind": "baseline", "method": cfg.baseline, **entries[cfg.baseline], "rescored": False}
    else:
        reference = {"kind": "champion", "method": champion.tags.get("method"), "version": str(champion.version),
                     **_champion_headline(reg, champion, digest, p)}
    accepted, checks, reason = gate(challenger["headline"], reference["headline"], cfg)
    if accepted:
        reg.crown(challenger["version"])
    return {**base, "accepted": accepted, "status": "promoted" if accepted else "refused", "reference": reference,
            "checks": checks, "reason": reason}


def _champion_headline(reg: Registry, champion, digest: str, p: Params) -> dict:
    """The champion's numbers on today's benchmark: its tags when it was scored on the same one, else it
    is evaluated again (and its tags updated), so the gate never compares numbers from two benchmarks."""
    if champion.tags.get(DIGEST_TAG) == digest:
        return {"headline": from_tags(champion.tags), "rescored": False}
    log.info("champion v%s was scored on another benchmark (%s != %s): scoring it again", champion.version,
             champion.tags.get(DIGEST_TAG), digest)
    out = Path(p.register_.out_dir) / "rescored" / f"v{champion.version}"
    metrics = run_evaluation(f"models:/{reg.name}/{champion.version}", p.evaluate,
                             Path(p.ingest.out_dir) / "manifest.parquet", p.seed, p.train.device, out_dir=out)
    h = headline(metrics)
    reg.tag(champion.version, {DIGEST_TAG: digest, **to_tags(h)})
    return {"headline": h, "rescored": True}


def _record(reg: Registry, decision: dict, out: Path | None) -> None:
    """decision.json, tags on the challenger's version, and one line printed."""
    decision["aliases"] = reg.aliases()
    version = decision["challenger"]["version"]
    reg.tag(version, {"gate.status": decision["status"], "gate.reason": decision["reason"][:4000],
                      "gate.time_utc": decision["time_utc"], "gate.forced": str(decision["forced"])})
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(decision, indent=2, default=str) + "\n")
    reason = decision["reason"].removeprefix("accepted: ").removeprefix("refused: ")
    print(f"register {reg.name}: challenger v{version} ({decision['challenger'].get('method')}) "
          f"{decision['status']}: {reason}")


def promote(name: str, version: str, mlflow_cfg: MlflowConfig, cfg: RegisterConfig, force: bool = False,
            reason: str | None = None, by: str | None = None, out: Path | None = None) -> dict:
    """A person's promotion of one version: through the gate against the champion, or forced (tagged with
    who and why)."""
    reg = Registry(name, mlflow_cfg)
    v = reg.version(version)
    challenger = {"method": v.tags.get("method"), "version": str(v.version), "headline": from_tags(v.tags)}
    champion = reg.alias(CHAMPION)
    base = {"model": name, "time_utc": _now(), "challenger": challenger, "forced": force,
            "thresholds": cfg.model_dump(mode="json", include={"min_gain", "max_r1_drop", "max_zeroshot_drop"})}
    if champion is not None and str(champion.version) == str(v.version):
        raise UserError(f"{name} v{v.version} is already the champion")
    if force:
        if not reason:
            raise UserError("--force needs --reason: forced promotions are recorded with who and why")
        who = by or getpass.getuser()
        reg.tag(v.version, {"promotion.forced": "true", "promotion.by": who, "promotion.reason": reason})
        reg.crown(v.version)
        decision = {**base, "accepted": True, "status": "forced", "reference": None, "checks": [],
                    "reason": f"forced by {who}: {reason}"}
    else:
        if champion is None:
            raise UserError(f"{name} has no champion to compare with: `dvc repro register` applies the baseline "
                            "rule, or promote with --force --reason")
        if champion.tags.get(DIGEST_TAG) != v.tags.get(DIGEST_TAG):
            raise UserError(f"v{v.version} and champion v{champion.version} were scored on different benchmarks "
                            f"({v.tags.get(DIGEST_TAG)} vs {champion.tags.get(DIGEST_TAG)}): run `dvc repro "
                            "register` (it rescores the champion) or promote with --force --reason")
        reference = {"kind": "champion", "method": champion.tags.get("method"), "version": str(champion.version),
                     "headline": from_tags(champion.tags), "rescored": False}
        accepted, checks, why = gate(challenger["headline"], reference["headline"], cfg)
        if accepted:
            reg.crown(v.version)
        decision = {**base, "accepted": accepted, "status": "promoted" if accepted else "refused",
                    "reference": reference, "checks": checks, "reason": why}
    _record(reg, decision, out)
    return decision


def rollback(name: str, mlflow_cfg: MlflowConfig) -> dict:
    reg = Registry(name, mlflow_cfg)
    demoted, restored = reg.rollback()
    reg.tag(demoted, {"rolled_back": _now()})
    print(f"rollback {name}: champion v{demoted} -> v{restored}")
    return {"model": name, "demoted": demoted, "champion": restored, "aliases": reg.aliases()}


def versions_table(name: str, mlflow_cfg: MlflowConfig) -> str:
    """Every version with its aliases and headline numbers (n beside each accuracy)."""
    reg = Registry(name, mlflow_cfg)
    aliases = {}
    for alias, version in reg.aliases().items():
        aliases.setdefault(str(version), []).append(alias)
    rows = [f"{'version':>7}  {'method':<14} {'aliases':<28} {'compositional (n)':>18} {'seen':>7} "
            f"{'held-out':>8} {'R@1 (n)':>14} {'zero-shot':>9}  gate"]
    for v in reg.versions():
        h, t = from_tags(v.tags), v.tags

        def num(key, width):
            return f"{h[key]:>{width}.4f}" if key in h else f"{'-':>{width}}"

        comp = f"{h['compositional']:.4f} ({h.get('compositional_n', 0)})" if "compositional" in h else "-"
        r1 = f"{h['r1']:.4f} ({h.get('r1_n', 0)})" if "r1" in h else "-"
        rows.append(f"{v.version:>7}  {t.get('method', '?'):<14} {','.join(sorted(aliases.get(str(v.version), []))):<28} "
                    f"{comp:>18} {num('compositional_seen', 7)} {num('compositional_held_out', 8)} {r1:>14} "
                    f"{num('zeroshot', 9)}  {t.get('gate.status', '')}")
    if len(rows) == 1:
        return f"model {name!r}: no versions registered"
    return "\n".join(rows)
