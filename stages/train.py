"""DVC stage train@<method>: train one method of params.yaml `methods` (also under torchrun)."""

import sys

from compclip.config import params
from compclip.training.trainer import train
from stages import run

if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m stages.train METHOD   (a key of params.yaml `methods`)")
    run(lambda: train(params(), sys.argv[1]))
