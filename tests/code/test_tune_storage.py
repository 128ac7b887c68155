"""Workers opening one new study storage at the same moment (optuna/optuna#4621): the worker that loses the
race to create a table or a version row opens the storage again instead of dying. The race is made exact
here: just before the worker's own statement runs, "another worker" opens the same storage in full."""

import optuna
import pytest
import sqlalchemy
from sqlalchemy import event

from compclip.tuning import study
from compclip.tuning.study import make_storage

# the three statements at which optuna 5's RDBStorage loses to a faster worker on sqlite
RACES = {"CREATE TABLE studies": "table studies already exists",
         "CREATE TABLE alembic_version": "table alembic_version already exists",
         "INSERT INTO alembic_version": "UNIQUE constraint failed: alembic_version.version_num"}


@pytest.fixture
def faster_worker():
    """Before the first statement starting with `marker`, open the storage at `url` from another engine."""
    armed = {}

    def interject(conn, cursor, statement, parameters, context, executemany):
        if armed and statement.lstrip().startswith(armed["marker"]):
            url = armed.pop("url")
            armed.clear()
            optuna.storages.RDBStorage(url)

    event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", interject)
    yield lambda url, marker: armed.update(url=url, marker=marker)
    event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", interject)


@pytest.mark.parametrize("marker", RACES)
def test_optuna_alone_loses_the_race(tmp_path, faster_worker, marker):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    faster_worker(url, marker)
    with pytest.raises(sqlalchemy.exc.DBAPIError, match=RACES[marker]):
        optuna.storages.RDBStorage(url)


@pytest.mark.parametrize("marker", RACES)
def test_the_loser_opens_the_storage_again_and_uses_it(tmp_path, faster_worker, marker):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    faster_worker(url, marker)
    storage = make_storage(url, heartbeat_interval=10, grace_period=30)
    s = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    s.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2
    with sqlalchemy.create_engine(url).connect() as c:  # one schema version, stamped once
        assert len(c.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()) == 1


def _raising(message: str, calls: list):
    def open_storage(*args):
        calls.append(args)
        raise sqlalchemy.exc.OperationalError("CREATE ...", {}, Exception(message))
    return open_storage


def test_other_database_errors_are_not_retried(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(study, "_open_storage", _raising("unable to open database file", calls))
    with pytest.raises(sqlalchemy.exc.OperationalError, match="unable to open database file"):
        make_storage(f"sqlite:///{tmp_path / 'study.db'}", 10, 30)
    assert len(calls) == 1


def test_a_race_lost_every_time_is_raised_after_the_last_attempt(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(study, "_open_storage", _raising("table studies already exists", calls))
    monkeypatch.setattr(study.time, "sleep", lambda s: None)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="already exists"):
        make_storage(f"sqlite:///{tmp_path / 'study.db'}", 10, 30)
    assert len(calls) == study._SCHEMA_ATTEMPTS
