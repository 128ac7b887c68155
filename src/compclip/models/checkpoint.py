"""Checkpoints: written atomically (a crash never leaves half a file), read with weights_only=True."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from compclip.errors import UserError

CKPT_PATTERN = re.compile(r"step_(\d+)\.pt$")


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a readable compclip checkpoint ({type(e).__name__}: {e})") from None


def checkpoints_newest_first(directory: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in Path(directory).glob("step_*.pt") if (m := CKPT_PATTERN.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(directory: Path) -> Path | None:
    newest = checkpoints_newest_first(directory)
    return newest[0] if newest else None


def load_weights(path: str | Path) -> tuple[str, dict]:
    """(open_clip model name, state_dict) from a training checkpoint or an exported model file."""
    ckpt = load_checkpoint(Path(path))
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise UserError(f"{path}: expected a compclip checkpoint with 'model_name' and 'model' keys")
    return ckpt["model_name"], ckpt["model"]
