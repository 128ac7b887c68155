"""Thin DVC stage entry points: read a params section, call the library, write the declared outs."""

import json
import logging
import sys


def run(fn) -> None:
    """Run a stage; expected errors (bad params, bad input files) end with one clear line, exit code 1."""
    from compclip.config import ConfigError
    from compclip.data.records import SourceError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("compclip").setLevel(logging.INFO)
    try:
        result = fn()
    except (ConfigError, SourceError, ValueError) as e:  # ValidationFailed is a ValueError
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
