"""DVC stage pretrain: CLIP on the training data (params `pretrain`); every method fine-tunes from it
(train.init_from), as the papers fine-tune a pretrained CLIP."""

from compclip.config import ConfigError, params
from compclip.training.trainer import train
from stages import run
from stages.launch import maybe_torchrun


def main():
    p = params()
    if p.pretrain is None:
        raise ConfigError("params.yaml: no `pretrain` section; remove the pretrain stage or add the section")
    return train(p, "clip", cfg=p.pretrain, run_name="pretrain-clip", recipe={"clip": 1.0})


if __name__ == "__main__":
    maybe_torchrun("stages.pretrain", [])
    run(main)
