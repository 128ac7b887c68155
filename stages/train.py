"""DVC stage train@<method>: train one method of params.yaml `methods` (also under torchrun) with its
method_overrides; with train.use_tuned, with the tune stage's best values for that method on top."""

import sys
from pathlib import Path

from compclip.config import params
from compclip.training.trainer import train
from compclip.tuning.best import BEST_FILE, apply_tuned
from stages import run
from stages.launch import maybe_torchrun


def main(method: str) -> dict:
    p = params().for_method(method)
    best = Path(p.tune.out_dir) / BEST_FILE if p.tune else None
    if p.train.use_tuned:
        p = apply_tuned(p, method, best)
    return train(p, method)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m stages.train METHOD   (a key of params.yaml `methods`)")
    maybe_torchrun("stages.train", sys.argv[1:])
    run(lambda: main(sys.argv[1]))
