"""DVC stage tune: an Optuna study per method of params.yaml `tune.methods` -> reports/tune/."""

from compclip.config import params
from compclip.tuning.run import tune
from stages import run

if __name__ == "__main__":
    run(lambda: tune(params()))
