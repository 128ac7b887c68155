"""The image tower in channels_last (NHWC) memory format.

The demo's ResNet tower has narrow convolutions (16-64 channels on 64 px images); oneDNN runs them faster
with channels in the innermost dimension: a fine-tuning step is 1.11-1.17x faster on 2 CPU cores
(bench/step_speedups.py), and on CUDA it is the layout convolutions prefer. Only the layout changes, not
the values: features agree with the contiguous model to float rounding (tests/model/test_memory_format.py).
Weights are saved contiguous (checkpoint.py, encode.model_digest), so files and digests do not depend on it.
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
