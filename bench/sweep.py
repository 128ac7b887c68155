"""Train and evaluate every method with one `dvc exp run`, then record the comparison with its provenance.

The GPU budget sweeps quoted in the README are this command on a CUDA machine (no MLflow needed there):
  python bench/sweep.py --set train.max_steps=600 --set train.batch_size=128 --set train.lr=5e-4 \
      --set '~method_overrides.hard_positive' --set '~method_overrides.clear_glass' --set '~method_overrides.combined' \
      --set train.device=cuda --no-mlflow --out bench/results/sweep_600steps.json
After `make demo` (or any `dvc repro`), record what it produced without training again:
  python bench/sweep.py --no-run --out bench/results/demo_cpu.json

The output file holds the full params.yaml the numbers came from (after the --set overrides), the git
commit, versions and device, and every method's metrics (all items, seen and held-out, each with n; the
suite's benchmarks) under `results.methods`, the blind text-only baseline's under `results.blind`, and, where
those stages ran, the study's summary (`results.tune`), the registry's decision (`results.registry`) and the
negatives stage's summary (`results.negatives`: coverage per rule, the negatives dropped for unseen combinations).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def run_experiment(sets: list[str], no_mlflow: bool) -> None:
    cmd = ["dvc", "exp", "run", *(arg for s in sets for arg in ("-S", s))]
    env = {**os.environ, **({"COMPCLIP_MLFLOW": "0"} if no_mlflow else {})}
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, env=env, check=True)


def collect(params: dict) -> dict:
    """Every method's metrics and training summary, as the evaluate and train stages wrote them."""
    out = {}
    for method in params["methods"]:
        metrics = Path(params["evaluate"]["out_dir"]) / method / "metrics.json"
        summary = Path(params["train"]["out_dir"]) / method / "summary.json"
        if not metrics.exists():
            raise SystemExit(f"{metrics}: missing; run `dvc repro` (or drop --no-run)")
        train = json.loads(summary.read_text()) if summary.exists() else {}
        out[method] = {"metrics": json.loads(metrics.read_text()),
                       "train": {k: train.get(k) for k in ("steps", "train_pairs", "device")}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a `dvc exp run -S` override")
    ap.add_argument("--no-run", action="store_true", help="only record the current outputs")
    ap.add_argument("--no-mlflow", action="store_true", help="COMPCLIP_MLFLOW=0 for the run (no MLflow there)")
    ap.add_argument("--out", required=True, help="results JSON (with provenance)")
    a = ap.parse_args()
    if a.no_run and a.set:
        raise SystemExit("--set needs a run; drop --no-run")
    if not a.no_run:
        run_experiment(a.set, a.no_mlflow)

    from compclip.evaluation.report import headline_table, sugarcrepe_table
    from compclip.provenance import write_result

    params = yaml.safe_load(Path("params.yaml").read_text())
    results = collect(params)
    blind_file = Path(params["evaluate"]["out_dir"]) / "blind" / "metrics.json"
    blind = json.loads(blind_file.read_text()) if blind_file.exists() else None
    devices = sorted({r["train"]["device"] or "unknown" for r in results.values()})
    # the study and the registry's decision of the same run, where its stages ran (each with its own provenance),
    # and the negatives stage's summary (coverage per rule, the negatives dropped for unseen combinations)
    extra = {}
    for key, (section, name) in {"tune": ("tune", "summary.json"), "registry": ("register", "decision.json"),
                                 "negatives": ("negatives", "summary.json")}.items():
        f = Path(params[section]["out_dir"]) / name if params.get(section) else None
        if f is not None and f.is_file():
            extra[key] = json.loads(f.read_text())
    write_result(a.out, {"methods": results, "blind": blind, **extra}, params, ", ".join(devices))
    steps = {m: r["train"]["steps"] for m, r in results.items()}
    print(f"steps per method: {steps}; device: {', '.join(devices)}")
    print(sugarcrepe_table({m: r["metrics"] for m, r in results.items()}))
    columns = {m: r["metrics"] for m, r in results.items()} | ({"blind": blind} if blind and blind.get("suite") else {})
    print("\nevery benchmark's headline figure (% [95% CI]):")
    print(headline_table(columns))
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
