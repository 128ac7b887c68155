"""Where per-caption work runs: in this process, or as tasks on Dask (a local cluster of worker processes,
or an existing scheduler). Results come back as tasks finish, in no fixed order: callers key every result
by content hash and write their tables in manifest order, so the output does not depend on the engine,
the number of workers, or which worker did what.

At most two tasks per worker are in flight, so the driver holds a bounded amount of work whatever the
number of captions, and each worker holds one task's captions at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from compclip.config import DaskConfig
from compclip.errors import UserError

log = logging.getLogger(__name__)


def uses_dask(cfg: DaskConfig) -> bool:
    return bool(cfg.scheduler) or cfg.workers > 0


@contextmanager
def dask_client(cfg: DaskConfig):
    """A Client of the scheduler in cfg, or of a local cluster of cfg.workers single-threaded processes."""
    from distributed import Client, LocalCluster

    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout=cfg.connect_timeout_s)
        except OSError as e:
            raise UserError(f"dask.scheduler {cfg.scheduler!r}: cannot connect ({e})") from None
        with client:
            yield client
        return
    # one thread per process: spaCy and the fill-mask model hold the GIL; Dask sets OMP/MKL threads to 1
    with LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_tasks(fn: Callable[[Any, Any], Any], inputs: Iterable[Any], shared: Any, cfg: DaskConfig) -> Iterator[Any]:
    """fn(input, shared) for every input, results as they finish. `inputs` is read lazily: the caller may
    produce them while consuming results (the generation stages look up the cache in between)."""
    if not uses_dask(cfg):
        for item in inputs:
            yield fn(item, shared)
        return
    from distributed import wait

    with dask_client(cfg) as client:
        workers = max(1, len(client.scheduler_info()["workers"]))
        log.info("dask: %d worker(s) at %s", workers, client.scheduler.address)
        shared_f = client.scatter(shared, broadcast=True)  # once per worker, not once per task
        in_flight: set = set()
        for item in inputs:
            in_flight.add(client.submit(fn, item, shared_f, pure=False))
            if len(in_flight) >= 2 * workers:
                done, in_flight = wait(in_flight, return_when="FIRST_COMPLETED")
                for f in done:
                    yield f.result()
        while in_flight:
            done, in_flight = wait(in_flight, return_when="FIRST_COMPLETED")
            for f in done:
                yield f.result()
