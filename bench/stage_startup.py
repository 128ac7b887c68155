"""A stage process's own overhead, with and without stages/__init__'s garbage-collector settings, side by side.

`python -m stages.<name>` turns the collector off while the stage imports torch, open_clip and mlflow, freezes
what they created before the work starts, and freezes everything again before the interpreter exits (its
collections at exit would walk the whole heap). "before" runs the very same stage module through runpy, where
the package cannot tell it is a stage process, so the collector runs as Python's defaults have it. Each round
runs every stage both ways back to back, the order alternating between rounds; medians of the wall time from
process start to exit, and of the command's own "stage command took" figure (imports and work, not the exit).

  python bench/stage_startup.py --workspace DIR [--rounds N] [--out FILE.json]   # DIR: a finished demo (make demo)
  python bench/stage_startup.py --smoke                                          # the synth stage at toy sizes

The default stages: compare (no torch), train clear_glass (torch, open_clip and MLflow; its checkpoint is
complete after the demo, so it loads, saves and logs) and evaluate clear_glass (every benchmark). They rewrite
their outputs in DIR: use a scratch copy of the demo, not a checkout whose dvc.lock you want to keep.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from compclip.provenance import write_result  # noqa: E402

TOOK = re.compile(r"\[compclip\] stage command took ([0-9.]+) s")
RUNPY = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"


def command(variant: str, stage: list[str]) -> list[str]:
    module = f"stages.{stage[0]}"
    if variant == "after":
        return [sys.executable, "-m", module, *stage[1:]]
    return [sys.executable, "-c", RUNPY, module, *stage[1:]]


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if run.returncode:
        raise SystemExit(f"{' '.join(cmd[-2:])} failed in {cwd}:\n{run.stderr[-3000:]}")
    took = TOOK.search(run.stderr)
    if not took:
        raise SystemExit(f"{' '.join(cmd[-2:])}: no 'stage command took' line in its output")
    return wall, float(took.group(1))


def smoke_workspace(root: Path) -> Path:
    """params.yaml with a toy shapes world: the synth stage takes about a second."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["synth"].update(scenes={"train": 6, "val": 3, "test": 6}, vg_scenes=2, cc3m_scenes=2, cc3m_shard_size=2,
                      benchmark_tries=2)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=REPO, help="a finished demo (default: this checkout)")
    ap.add_argument("--stages", nargs="+", default=["compare", "train clear_glass", "evaluate clear_glass"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="the synth stage on a toy world, one round")
    a = ap.parse_args()
    scratch = None
    if a.smoke:
        scratch = Path(tempfile.mkdtemp(prefix="compclip-stage-startup-"))
        a.workspace, a.stages, a.rounds = smoke_workspace(scratch), ["synth"], 1
    code = a.workspace if (a.workspace / "stages").is_dir() else REPO  # the workspace's own code when it has some
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code / "src"), str(code)]),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    stages = [s.split() for s in a.stages]
    samples = {(" ".join(s), v): [] for s in stages for v in ("before", "after")}
    try:
        for r in range(a.rounds):
            for s in stages:
                for variant in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    samples[(" ".join(s), variant)].append(timed(command(variant, s), a.workspace, env))
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    results = {"workspace": str(a.workspace), "rounds": a.rounds, "stages": {}}
    print(f"{'stage':24s} {'wall before':>12s} {'wall after':>11s} {'saved':>7s} {'command before':>15s} {'after':>7s}")
    for s in stages:
        name = " ".join(s)
        med = {v: [statistics.median(x[i] for x in samples[(name, v)]) for i in (0, 1)] for v in ("before", "after")}
        results["stages"][name] = {
            "wall_s": {v: round(med[v][0], 3) for v in med}, "command_s": {v: round(med[v][1], 3) for v in med},
            "wall_saved_s": round(med["before"][0] - med["after"][0], 3),
            "exit_s": {v: round(med[v][0] - med[v][1], 3) for v in med},  # after the command's last line
            "samples": {v: samples[(name, v)] for v in ("before", "after")}}
        print(f"{name:24s} {med['before'][0]:11.2f}s {med['after'][0]:10.2f}s {med['before'][0] - med['after'][0]:6.2f}s"
              f" {med['before'][1]:14.2f}s {med['after'][1]:6.2f}s")
    if a.out:
        write_result(a.out, results, params={**vars(a), "workspace": str(a.workspace)})


if __name__ == "__main__":
    main()
