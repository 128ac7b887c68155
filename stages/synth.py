"""DVC stage synth: render the shapes world in COCO, Visual Genome and CC3M formats."""

from compclip.config import params
from compclip.data.synth import synthesize
from stages import run

if __name__ == "__main__":
    run(lambda: synthesize(params().synth, params().seed))
