"""The commands README.md and bench/results/README.md give are right: every `-S`/`--set` override names a
real params key with a valid value, and a `train.max_steps=N` in them trains N steps (epochs do not cap it).
(tests/integration/test_dvc_repro.py runs that form of `dvc exp run` for real on tiny params.)"""

import re

import pytest
import yaml

from compclip.config import Params, TrainConfig
from compclip.training.trainer import total_steps
from tests.conftest import REPO

DOCS = [REPO / "README.md", REPO / "bench/results/README.md"]
OVERRIDE = re.compile(r"(?:-S|--set) ([\w.]+)=([^\s`]+)")
DELETION = re.compile(r"(?:-S|--set) '?~([\w.]+)'?")  # Hydra's ~key, as dvc exp run -S takes it


def command_lines() -> list[str]:
    """Every dvc exp run / bench/sweep.py command the docs give."""
    return [line for doc in DOCS
            for line in re.findall(r"`([^`]*(?:dvc exp run|bench/sweep\.py)[^`]*)`", doc.read_text())]


def commands() -> list[list[tuple[str, str]]]:
    """The override lists of those commands."""
    return [pairs for line in command_lines() if (pairs := OVERRIDE.findall(line))]


def parent_of(raw: dict, key: str) -> tuple[dict, str]:
    """The mapping that holds a dotted key of params.yaml, and the key's last part."""
    *parents, leaf = key.split(".")
    for part in parents:
        raw = raw[part]
    return raw, leaf


def test_the_docs_give_reproduction_commands():
    assert any(any(k == "train.max_steps" for k, _ in c) for c in commands())


@pytest.mark.parametrize("overrides", commands(), ids=lambda c: " ".join(f"{k}={v}" for k, v in c))
def test_each_override_is_a_valid_param_and_max_steps_means_steps(overrides):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in overrides:
        node, leaf = parent_of(raw, key)
        assert leaf in node, f"{key}: not a key of params.yaml"
        node[leaf] = yaml.safe_load(value)
    p = Params.model_validate(raw)
    if any(k == "train.max_steps" for k, _ in overrides):
        cfg: TrainConfig = p.train
        pairs = 10 * cfg.batch_size  # far fewer pairs than steps × batch: epochs must not cap the run
        assert total_steps(cfg, pairs)[1] == cfg.max_steps


def test_each_deletion_names_a_key_params_yaml_has_and_leaves_valid_params():
    deletions = [key for line in command_lines() for key in DELETION.findall(line)]
    assert "method_overrides.hard_positive" in deletions
    for key in deletions:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        node, leaf = parent_of(raw, key)
        assert leaf in node, f"~{key}: not a key of params.yaml"
        del node[leaf]
        Params.model_validate(raw)
