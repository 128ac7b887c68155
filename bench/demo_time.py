"""How long `make demo` takes from a fresh clone, stage by stage: the figure the README quotes.

Clones the committed HEAD into --work (no DVC run cache, empty compclip caches: what a new user has), runs
`dvc repro` there with this checkout's installed environment (the clone's src/ first on PYTHONPATH) and
stamps every stage as DVC starts it. The record holds the total, each stage's seconds and the clone's
reports/compare/compare.md (the demo's table, the one the README quotes).

  python bench/demo_time.py --out bench/results/demo_time_cpu.json     # the whole demo (minutes)
  python bench/demo_time.py --smoke                                     # only the synth stage: checks it runs
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"^(?:Running stage '([^']+)'|Stage '([^']+)' (?:is cached|didn't change))")
COMMAND = re.compile(r"^\[compclip\] stage command took ([0-9.]+) s")  # stages.run prints it


def clone(work: Path) -> Path:
    dest = work / "compclip"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO), str(dest)], check=True)
    return dest


def timed_repro(checkout: Path, targets: list[str], env: dict, log) -> tuple[float, dict]:
    """Run `dvc repro` in checkout; seconds per stage from the moment DVC names it to the next one (or the end),
    and of those the stage command's own (command_s, as it reports; the rest is DVC's checks and saves)."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    start = time.monotonic()
    proc = subprocess.Popen([dvc, "repro", *targets], cwd=checkout, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    stages: dict[str, dict] = {}
    current = None
    for line in proc.stdout:
        log.write(line)
        took = COMMAND.match(line.strip())
        if took and current:
            stages[current]["command_s"] = float(took.group(1))
        m = STAGE.match(line.strip())
        if m:
            now = time.monotonic() - start
            if current:
                stages[current]["seconds"] = round(now - stages[current]["started_s"], 1)
            current = m.group(1) or m.group(2)
            stages[current] = {"ran": bool(m.group(1)), "started_s": round(now, 1)}
    rc = proc.wait()
    total = time.monotonic() - start
    if current:
        stages[current]["seconds"] = round(total - stages[current]["started_s"], 1)
    if rc:
        raise SystemExit(f"dvc repro failed with exit code {rc}; its output: {log.name}")
    return total, stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=None, help="folder for the clone (default: a temporary one, removed after)")
    ap.add_argument("--out", help="write the timings with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="only the synth stage: checks the script runs")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="compclip-demo-time-"))
    work.mkdir(parents=True, exist_ok=True)
    checkout = clone(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout / "src"), str(checkout)]),
           "COMPCLIP_CACHE": str(work / "cache"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PYTHONUNBUFFERED": "1"}
    targets = ["synth"] if a.smoke else []
    with open(work / "repro.log", "w", buffering=1) as log:  # line-buffered: follow it with tail -f
        total, stages = timed_repro(checkout, targets, env, log)

    print(f"dvc repro from a fresh clone: {total / 60:.1f} min ({total:.0f} s); per stage (s), and of those the "
          "stage command's own:")
    for name, s in stages.items():
        own = f"{s['command_s']:9.1f}" if "command_s" in s else f"{'':9}"
        print(f"  {name:<24} {s['seconds']:7.1f}{own}{'' if s['ran'] else '  (cached)'}")
    commands = sum(s.get("command_s", 0.0) for s in stages.values())
    compare = checkout / "reports/compare/compare.md"
    # what ran is the clone's commit, clean whatever the state of this checkout (provenance's dirty flag)
    cloned = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    print(f"  stage commands {commands:.0f} s, DVC around them {total - commands:.0f} s")
    results = {"cloned_commit": cloned, "total_s": round(total, 1), "commands_s": round(commands, 1),
               "stages": stages, "targets": targets or ["all"],
               "compare_md": compare.read_text() if compare.exists() else None}
    if a.out:
        sys.path.insert(0, str(REPO / "src"))
        from compclip.provenance import write_result

        write_result(a.out, results, {**vars(a), "clone": str(checkout)})
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
