"""Where a registered model came from: the commit, the dvc.lock hashes of its data and weights, a digest
of the params its training stage declared, and a digest of the benchmark it was scored on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import yaml

from compclip.config import EvaluateConfig
from compclip.evaluation.sugarcrepe import read_sugarcrepe
from compclip.provenance import git_commit

CODE_DIRS = ("src/", "stages/")


def stage_lineage(lock_path: Path, method: str) -> dict[str, str]:
    """From dvc.lock's train@<method>: md5 of every data dep and of the model, and a digest of its params.
    Empty when the model was not trained by `dvc repro` (no lock entry)."""
    if not lock_path.is_file():
        return {}
    stage = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {}).get(f"train@{method}")
    if not stage:
        return {}
    data = {d["path"]: d.get("md5", "") for d in stage.get("deps", []) if not d["path"].startswith(CODE_DIRS)}
    model = {o["path"]: o.get("md5", "") for o in stage.get("outs", []) if o["path"].endswith("model.pt")}
    params = json.dumps(stage.get("params", {}), sort_keys=True, default=str)
    return {"lineage.data": json.dumps(data, sort_keys=True), "lineage.model": json.dumps(model, sort_keys=True),
            "params_digest": hashlib.sha256(params.encode()).hexdigest()[:16]}


def commit_tags(repo: Path = Path(".")) -> dict[str, str]:
    c = git_commit(repo)
    return {"git_commit": c["commit"] or "unknown", "git_dirty": str(c["dirty"])}


def benchmark_digest(cfg: EvaluateConfig, manifest: Path) -> str:
    """What the headline numbers were measured on: the SugarCrepe-format files, the bytes of every image
    they name, and the test split's (image, caption) rows. Two models' numbers are compared by the gate
    only when their digests match; otherwise the champion is scored again."""
    h = hashlib.sha256()
    data = Path(cfg.sugarcrepe.data)
    for f in sorted(data.glob("*.json")):
        h.update(f.name.encode() + f.read_bytes())
    images = sorted({it.image_path for items in read_sugarcrepe(data, Path(cfg.sugarcrepe.images)).values()
                     for it in items})
    for path in images:
        h.update(Path(path).name.encode())
        try:
            h.update(Path(path).read_bytes())
        except OSError:
            h.update(b"<unreadable>")
    rows = pd.read_parquet(manifest, columns=["split", "image_path", "caption"])
    rows = rows[rows["split"] == "test"]
    rows = pd.DataFrame({"image": rows["image_path"].map(lambda s: Path(s).name), "caption": rows["caption"]})
    rows = rows.sort_values(["image", "caption"])  # file names only: the same data in another clone matches
    h.update(pd.util.hash_pandas_object(rows, index=False).values.tobytes())
    return h.hexdigest()[:16]
