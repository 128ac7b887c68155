"""train.use_tuned: the tune stage's best values (best_params.yaml) merged into a tuned method's params."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from compclip.config import ConfigError, Params, override

log = logging.getLogger(__name__)
BEST_FILE = "best_params.yaml"


def read_best(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"train.use_tuned: {path} does not exist (run `dvc repro tune` first)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of method -> best trial")
    return data


def apply_tuned(p: Params, method: str, path: Path) -> Params:
    """p with the method's best values (loss.* and train.*) when it was tuned and has a best trial;
    p unchanged (and a log line saying why) otherwise."""
    entry = read_best(path).get(method)
    if not entry or not entry.get("params"):
        log.info("train.use_tuned: %s has no tuned values in %s (%s); using params.yaml", method, path,
                 (entry or {}).get("status", "not tuned"))
        return p
    log.info("train.use_tuned: %s trains with trial %s of %s: %s", method, entry.get("trial"),
             entry.get("study"), entry["params"])
    return override(p, entry["params"])
