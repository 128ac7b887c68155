"""Real servers for integration tests, on 127.0.0.1 at free ports, started and stopped by the tests:
an MLflow tracking server (sqlite backend), a Prefect server (sqlite) and its process workers, and a PostgreSQL
cluster (when initdb is installed)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(ready, proc: subprocess.Popen, log: Path, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not up after {timeout} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def _http_server(cmd: list[str], log: Path, health_url: str, what: str, env: dict | None = None,
                 timeout: float = 120):
    """Start cmd in its own session, wait until health_url answers 200, stop it (the whole group) at exit."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def ready() -> bool:
        try:
            return urllib.request.urlopen(health_url, timeout=2).status == 200
        except OSError:
            return False

    try:
        _wait(ready, proc, log, what, timeout)
        yield
    finally:
        _stop(proc)


@contextmanager
def mlflow_server(root: Path):
    """`mlflow server` with a sqlite backend and proxied artifacts; yields its http:// URI."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts")]
    uri = f"http://127.0.0.1:{port}"
    with _http_server(cmd, root / "mlflow-server.log", f"{uri}/health", "mlflow server"):
        yield uri


def postgres_bin() -> Path | None:
    """The folder of initdb/pg_ctl: PATH first, then Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@contextmanager
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (as user `postgres` when the tests run as root, which
    initdb refuses; its folder is then directly under /tmp, which that user can reach); yields a
    postgresql:// URL of database `optuna`."""
    import tempfile

    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("initdb not found")
    root = Path(tempfile.mkdtemp(prefix="compclip-pg-"))
    data, port, log = root / "pgdata", free_port(), root / "postgres.log"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    with open(log, "w") as out:
        if os.geteuid() == 0:
            shutil.chown(log, "postgres")
        proc = subprocess.Popen([*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                                 "-h", "127.0.0.1", "-k", str(root)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            return False
        return subprocess.run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                               "-c", "select 1"], capture_output=True).returncode == 0

    try:
        _wait(ready, proc, log, "postgres")
        subprocess.run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c",
                        "create database optuna"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def prefect_env(root: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment of Prefect processes in tests: their own PREFECT_HOME, no analytics, the venv first."""
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_LOGGING_LEVEL": "INFO"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@contextmanager
def prefect_server(root: Path):
    """`prefect server start` with a sqlite database under root; yields its API URL (…/api)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**prefect_env(root), "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}"}
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    api = f"http://127.0.0.1:{port}/api"
    with _http_server(cmd, root / "prefect-server.log", f"{api}/health", "prefect server", env, timeout=180):
        yield api


@contextmanager
def prefect_worker(root: Path, api_url: str, pool: str, cwd: Path):
    """A process worker polling `pool`; stopped with SIGINT (it ignores the first SIGTERM)."""
    log = root / f"prefect-worker-{pool}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool,
                                 "--type", "process", "--name", f"test-{pool}"], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env=prefect_env(root, api_url), start_new_session=True)
    try:
        time.sleep(1)
        if proc.poll() is not None:
            raise RuntimeError(f"prefect worker exited with {proc.returncode}: {log.read_text()[-2000:]}")
        yield log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
