"""open_clip models by name: tiny configs shipped with compclip for CPU work, real names for real work.

`load_model(spec)` is the one way to get a model for evaluation:
  - a checkpoint file written by compclip's trainer,
  - `NAME:PRETRAINED` (open_clip name and pretrained tag or local weights file), e.g. `ViT-B-32:openai`,
  - a `models:/name@alias` or `runs:/...` MLflow URI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from compclip.errors import PretrainedUnavailable, UserError
from compclip.models.memory_format import use_channels_last
from compclip.models.text_length import fit_text_length

CONFIG_DIR = Path(__file__).parent / "configs"
_registered = False


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def batchnorm_layers(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def register_configs() -> None:
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


@dataclass
class ClipBundle:
    """A model with the image transform and tokenizer that belong to it."""

    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    name: str


def _pretrained_help(name: str, pretrained: str, err: Exception) -> str:
    return (
        f"could not load pretrained weights {pretrained!r} for {name}: {type(err).__name__}: {err}\n"
        "No weights can be downloaded here. Either put the weights in the Hugging Face cache on a machine "
        f"with network access (python -c \"import open_clip; open_clip.create_model('{name}', "
        f"pretrained='{pretrained}')\") and copy ~/.cache/huggingface to this machine, or download the "
        "weights file and set `model.pretrained` in params.yaml to its local path (e.g. "
        "models/pretrained/ViT-B-32-openai.pt)."
    )


def create(name: str, pretrained: str | None = None, device: str | torch.device = "cpu",
           cache_dir: str | None = None, fit_text: bool = True, channels_last: bool = True) -> ClipBundle:
    """fit_text: encode texts only up to their end token (models.text_length: same features, less work);
    channels_last: the image tower in NHWC layout (models.memory_format: same features, faster convolutions)."""
    register_configs()
    if name not in open_clip.list_models():
        raise UserError(f"unknown model {name!r}; compclip configs: "
                        f"{sorted(p.stem for p in CONFIG_DIR.glob('*.json'))}, or any of open_clip.list_models()")
    if pretrained and not Path(pretrained).is_file() and pretrained not in open_clip.list_pretrained_tags_by_model(name):
        raise UserError(f"{name} has no pretrained tag {pretrained!r}; known: "
                        f"{open_clip.list_pretrained_tags_by_model(name)} (or give a local weights file)")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained or None, device=device, cache_dir=cache_dir, output_dict=True)
    except Exception as e:
        if pretrained:
            raise PretrainedUnavailable(_pretrained_help(name, pretrained, e)) from e
        raise
    if fit_text:
        fit_text_length(model)
    if channels_last:
        use_channels_last(model)
    return ClipBundle(model, preprocess, open_clip.get_tokenizer(name), name)


def _from_mlflow(uri: str, device: str | torch.device) -> ClipBundle:
    """A model logged by compclip (tracking.Run.log_model): safetensors weights + the open_clip name.
    Nothing is unpickled: a model logged with pickle (mlflow.pytorch's default) is refused, since loading
    it would run whatever code its file holds."""
    import mlflow

    from compclip.models.checkpoint import load_model_folder

    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    name, state = load_model_folder(folder, uri)
    bundle = create(name, None, device)
    bundle.model.load_state_dict(state)
    return bundle


def load_model(spec: str, device: str | torch.device = "cpu") -> ClipBundle:
    from compclip.models.checkpoint import load_weights

    if spec.startswith(("models:/", "runs:/")):
        return _from_mlflow(spec, device)
    if os.path.isfile(spec):
        name, state = load_weights(spec)
        bundle = create(name, None, device)
        bundle.model.load_state_dict(state)
        return bundle
    if ":" in spec:
        name, pretrained = spec.split(":", 1)
        return create(name, pretrained, device)
    raise UserError(f"model {spec!r}: not a file, not NAME:PRETRAINED, not a models:/ or runs:/ URI")
