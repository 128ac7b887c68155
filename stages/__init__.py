"""Thin DVC stage entry points: read a params section, call the library, write the declared outs."""

import gc
import json
import logging
import sys
import time

STARTED = time.monotonic()  # `python -m stages.<name>` imports this package first: the stage's start
# While `python -m` imports this package, argv[0] is still "-m": a stage process, not a test importing run().
# Its imports (torch, open_clip, mlflow) create about a million objects that are never garbage, and every
# collection walks them all: none runs until run() has frozen them (bench/stage_startup.py measures it).
STAGE_PROCESS = sys.argv[:1] == ["-m"]
if STAGE_PROCESS:
    gc.disable()


def run(fn) -> None:
    """Run a stage, with compclip.allocator's malloc settings. Problems the user can fix (params, input files,
    a failed validation: UserError, and missing pretrained weights) end with one clear line and exit code 1;
    anything else is a bug and keeps its traceback."""
    from compclip.allocator import keep_freed_memory
    from compclip.errors import UserError

    keep_freed_memory()  # tensors reuse freed memory instead of faulting pages in again (compclip.allocator)
    if STAGE_PROCESS:
        gc.freeze()  # the imported objects move to a generation no collection walks
        gc.enable()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("compclip").setLevel(logging.INFO)
    try:
        result = fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    # the command's own share of the stage, imports included; the rest of its time in `dvc repro` is DVC's
    # (bench/demo_time.py splits the two)
    if STAGE_PROCESS:
        # the stage's own garbage is collected now (its files closed, finalizers run); then everything is frozen,
        # so the interpreter's collections at exit do not walk the whole heap again (1-2 s with torch loaded)
        gc.collect()
        gc.freeze()
    print(f"[compclip] stage command took {time.monotonic() - STARTED:.1f} s", file=sys.stderr)
