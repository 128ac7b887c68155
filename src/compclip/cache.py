"""Where compclip keeps what it can recompute (token ids, spaCy tags): `$COMPCLIP_CACHE`, default
`~/.cache/compclip`. Every file there is keyed by content, so deleting it only costs time."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("COMPCLIP_CACHE") or Path.home() / ".cache" / "compclip")
