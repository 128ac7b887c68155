"""Where a number came from: the commit, the versions, the machine and the params, written next to it.

Every figure compclip quotes (README, bench/results, closing notes) is produced by a committed command that
writes `{"provenance": ..., "results": ...}` through `write_result`, so anyone can see what made it and
run it again."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


def git_commit(repo: Path | str = ".") -> dict:
    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        except OSError:  # no git on this machine
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    if os.environ.get("COMPCLIP_GIT_COMMIT"):
        # a copy of the tree sent to another machine (a lent GPU), whose .git, if any, may be older than the
        # tree: the commit its sender names wins; cleanliness unknown
        return {"commit": os.environ["COMPCLIP_GIT_COMMIT"], "dirty": None, "commit_from": "COMPCLIP_GIT_COMMIT"}
    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if commit else None}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or None


def device_info(device: str = "cpu") -> dict:
    import torch

    # the CPU's model and the vector units torch uses: float results (MiniLM similarities at a threshold,
    # trained weights) can differ in the last bits between CPUs that differ in them
    info = {"device": str(device), "cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def versions() -> dict:
    import open_clip
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__}


def provenance(params: dict | None = None, device: str = "cpu", repo: Path | str = ".") -> dict:
    """The record that goes next to a result. params: the full settings that produced it."""
    blob = json.dumps(params, sort_keys=True, default=str) if params is not None else ""
    return {"command": [Path(sys.argv[0]).name, *sys.argv[1:]], **git_commit(repo), **versions(),
            **device_info(device), "time_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "params_sha256": hashlib.sha256(blob.encode()).hexdigest()[:16] if params is not None else None,
            "params": params}


def write_result(path: Path | str, results, params: dict | None = None, device: str = "cpu") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"provenance": provenance(params, device), "results": results}
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path
