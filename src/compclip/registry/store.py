"""The registered model in MLflow: versions with tags, the aliases, and the champion's history (a
registered-model tag), so a rollback knows whom to restore."""

from __future__ import annotations

import json

from compclip import tracking
from compclip.config import MlflowConfig
from compclip.errors import UserError

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
HISTORY_TAG = "champion_history"


class Registry:
    def __init__(self, name: str, mlflow_cfg: MlflowConfig):
        if not tracking.enabled(mlflow_cfg):
            raise UserError("the model registry needs MLflow: set mlflow.enabled: true (and unset COMPCLIP_MLFLOW=0)")
        from mlflow.tracking import MlflowClient

        tracking.configure(mlflow_cfg)
        self.name, self.client = name, MlflowClient()

    # versions
    def register(self, run_id: str, tags: dict[str, str]):
        """The version made from run_id's logged model: created on first sight, found again after (a stage
        that reruns does not register the same model twice)."""
        if existing := self.by_run(run_id):
            return existing
        version = tracking.register_model(run_id, self.name)
        for k, v in tags.items():
            self.client.set_model_version_tag(self.name, version.version, k, v)
        return self.version(version.version)

    def by_run(self, run_id: str):
        found = self.client.search_model_versions(f"name='{self.name}' and run_id='{run_id}'")
        return self.version(found[0].version) if found else None

    def version(self, version: str | int):
        try:
            return self.client.get_model_version(self.name, str(version))
        except Exception as e:  # MlflowException: RESOURCE_DOES_NOT_EXIST
            raise UserError(f"model {self.name!r} has no version {version}: {e}") from None

    def versions(self) -> list:
        if not self._exists():
            return []
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def tag(self, version: str | int, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(self.name, str(version), k, v)

    # aliases
    def alias(self, alias: str):
        if not self._exists():
            return None
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except Exception:  # no such alias
            return None

    def aliases(self) -> dict[str, str]:
        if not self._exists():
            return {}
        return dict(self.client.get_registered_model(self.name).aliases)

    def set_alias(self, alias: str, version: str | int) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def crown(self, version: str | int) -> None:
        """version becomes champion; the champion it replaces becomes previous-champion."""
        history = self.history()
        current = self.alias(CHAMPION)
        if current is not None and (not history or history[-1] != str(current.version)):
            history.append(str(current.version))  # a champion set by hand outside compclip
        history.append(str(version))
        self._set_history(history)
        self.set_alias(CHAMPION, version)
        self._point_previous(history)

    def rollback(self) -> tuple[str, str]:
        """The champion before the current one is champion again; returns (demoted, restored)."""
        history = self.history()
        current = self.alias(CHAMPION)
        if current is None or len(history) < 2:
            raise UserError(f"model {self.name!r}: no previous champion to roll back to "
                            f"(champion history: {history or 'empty'})")
        demoted = history.pop()
        self._set_history(history)
        self.set_alias(CHAMPION, history[-1])
        self._point_previous(history)
        return demoted, history[-1]

    def history(self) -> list[str]:
        if not self._exists():
            return []
        return [str(v) for v in json.loads(self.client.get_registered_model(self.name).tags.get(HISTORY_TAG, "[]"))]

    def _set_history(self, history: list[str]) -> None:
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))

    def _point_previous(self, history: list[str]) -> None:
        if len(history) >= 2:
            self.set_alias(PREVIOUS, history[-2])
        elif self.alias(PREVIOUS) is not None:
            self.client.delete_registered_model_alias(self.name, PREVIOUS)

    def _exists(self) -> bool:
        return bool(self.client.search_registered_models(f"name='{self.name}'"))
