"""Checkpoints: written atomically (a crash never leaves half a file), read with weights_only=True; and the
model folder logged to MLflow: safetensors weights plus the open_clip model name, loaded without pickle."""

from __future__ import annotations

import json
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


MODEL_WEIGHTS = "model.safetensors"
MODEL_INFO = "compclip_model.json"


def save_model_folder(model: torch.nn.Module, model_name: str, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / MODEL_WEIGHTS))
    (folder / MODEL_INFO).write_text(json.dumps({"open_clip_model": model_name, "torch": torch.__version__}) + "\n")


def load_model_folder(folder: Path, source: str) -> tuple[str, dict]:
    """(open_clip model name, state_dict). Anything else, a pickled model in particular, is refused:
    unpickling a file runs whatever code it holds."""
    from safetensors.torch import load_file

    weights, info = folder / MODEL_WEIGHTS, folder / MODEL_INFO
    if not weights.is_file() or not info.is_file():
        found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())[:8]
        raise UserError(f"{source}: not a compclip model folder (expected {MODEL_WEIGHTS} and {MODEL_INFO}, "
                        f"found {found}); pickled models are refused because loading them can run arbitrary code")
    try:
        name = json.loads(info.read_text())["open_clip_model"]
        return name, load_file(str(weights))
    except Exception as e:
        raise UserError(f"{source}: unreadable model folder ({type(e).__name__}: {e})") from None
