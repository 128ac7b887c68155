"""DVC stage register: every evaluated model into the MLflow registry, the gate for `champion`
-> reports/registry/decision.json."""

from compclip.config import params
from compclip.registry.promotion import register_run
from stages import run

if __name__ == "__main__":
    run(lambda: register_run(params()))
