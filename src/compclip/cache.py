"""Where compclip keeps what it can recompute (token ids, spaCy tags): `$COMPCLIP_CACHE`, default
`~/.cache/compclip`. Every file there is keyed by content, so deleting it only costs time."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("COMPCLIP_CACHE") or Path.home() / ".cache" / "compclip")


class JsonCache:
    """key -> a JSON value, in one SQLite file (a content-hash cache: the caller makes the keys)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _select(self, column: str, keys: list[str]):
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            yield from self.db.execute(f"SELECT {column} FROM rows WHERE key IN ({','.join('?' * len(part))})", part)

    def get_many(self, keys: list[str]) -> dict:
        return {k: json.loads(v) for k, v in self._select("key, value", keys)}

    def has_many(self, keys: list[str]) -> set[str]:
        return {k for (k,) in self._select("key", keys)}

    def put_many(self, items: dict) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in items.items()])
