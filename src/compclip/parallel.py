"""Where per-caption work runs: in this process, or as tasks on Dask (a local cluster of worker processes,
or an existing scheduler). Results come back as tasks finish, in no fixed order: callers key every result
by content hash (or by position) and write their tables in manifest order, so the output does not depend
on the engine, the number of workers, or which worker did what.

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


class InProcess:
    """The stage's own process: fn(item, shared) in order, one at a time."""
    workers = 1

    def map_unordered(self, fn: Callable[[Any, Any], Any], inputs: Iterable[Any], shared: Any) -> Iterator[Any]:
        for item in inputs:
            yield fn(item, shared)


class OnDask:
    """Tasks on a Dask cluster; `shared` goes to each worker once, not with every task."""

    def __init__(self, client):
        self.client = client
        self.workers = max(1, len(client.scheduler_info()["workers"]))

    def map_unordered(self, fn: Callable[[Any, Any], Any], inputs: Iterable[Any], shared: Any) -> Iterator[Any]:
        """`inputs` is read lazily: the caller may produce them while consuming results (the negatives stage
        looks up its cache in between)."""
        from distributed import wait

        shared_f = self.client.scatter(shared, broadcast=True, hash=False)  # a key of its own
        in_flight: set = set()
        for item in inputs:
            in_flight.add(self.client.submit(fn, item, shared_f, pure=False))
            if len(in_flight) >= 2 * self.workers:
                done, in_flight = wait(in_flight, return_when="FIRST_COMPLETED")
                yield from (f.result() for f in done)
        while in_flight:
            done, in_flight = wait(in_flight, return_when="FIRST_COMPLETED")
            yield from (f.result() for f in done)


def uses_dask(cfg: DaskConfig) -> bool:
    return bool(cfg.scheduler) or cfg.workers > 0


@contextmanager
def engine(cfg: DaskConfig):
    """InProcess, or OnDask with a Client of cfg.scheduler or of a local cluster of cfg.workers processes."""
    if not uses_dask(cfg):
        yield InProcess()
        return
    import dask
    from distributed import Client, LocalCluster

    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout=cfg.connect_timeout_s)
        except OSError as e:
            raise UserError(f"dask.scheduler {cfg.scheduler!r}: cannot connect ({e})") from None
        with client:
            log.info("dask: scheduler %s", cfg.scheduler)
            yield OnDask(client)
        return
    # one thread per process: spaCy and the fill-mask model hold the GIL; Dask sets OMP/MKL threads to 1.
    # Its sampling profiler takes the GIL every 10 ms, and its malloc trimming slows spaCy's many small
    # allocations: measured here, a worker ran tagging 25% slower than the same process outside Dask.
    with dask.config.set({"distributed.worker.profile.enabled": False,
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        log.info("dask: local cluster of %d worker processes", cfg.workers)
        yield OnDask(client)
