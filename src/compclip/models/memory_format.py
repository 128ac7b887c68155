"""The image tower in channels_last (NHWC) memory format.

The demo's ResNet tower is narrow (width 16, 64 px images); oneDNN runs its convolutions faster with the
channels innermost: a fine-tuning step on 2 CPU cores is 1.04-1.22x faster than with the tower in NCHW
(bench/results/step_speedups_cpu.json), and on CUDA it is the layout convolutions prefer. Only the layout
changes, not the values: features and gradients agree with the NCHW tower to float rounding
(tests/code/test_memory_format.py). Weights are saved contiguous (checkpoint.save_model_folder) and the
embedding cache's digest reads them contiguous (encode.model_digest), so neither depends on the layout.
"""

from __future__ import annotations

import torch


def _to_channels_last(module: torch.nn.Module, args: tuple) -> tuple:
    image, *rest = args
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        image = image.contiguous(memory_format=torch.channels_last)
    return (image, *rest)


def use_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Convert the image tower's weights and, on every call, its input; a model without convolutions in
    `visual` (or without `visual`) is left as it is."""
    visual = getattr(model, "visual", None)
    if visual is None or not any(isinstance(m, torch.nn.Conv2d) for m in visual.modules()):
        return model
    visual.to(memory_format=torch.channels_last)
    visual.register_forward_pre_hook(_to_channels_last)
    return model
