"""Many simulations at once: local processes or an existing Dask cluster.

Every executor returns results in input order, and callers decide from the results in that
order, so what a search or a sweep concludes never depends on how many workers ran it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from simroll.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")


class Executor:
    """Runs ``fn`` over items; ``map`` returns the results in input order. In-process by default."""

    workers = 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(x) for x in items]

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_WORKER_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _watch_parent(read_fd: int, write_fd: int | None, parent: int) -> None:
    """A worker's initializer: die with the parent, and leave Ctrl-C to it.

    The worker stays in the parent's process group (a terminal's Ctrl-C or ``kill -- -PGID``
    reaches it) but ignores SIGINT: the parent alone reports the interrupt, once, and ends its
    workers. A thread blocks on a pipe whose only writer is the parent: when the parent dies,
    however (kill -9 included), the read returns EOF and the worker exits, so no worker outlives
    the command holding its caller's stdout and stderr open.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if write_fd is not None:  # forked: our copy of the writing end would keep the pipe open forever
        os.close(write_fd)

    def wait() -> None:
        if write_fd is None and read_fd < 0:  # spawned without the pipe: watch the parent's pid instead
            import time

            while os.getppid() == parent:
                time.sleep(1.0)
        else:
            while os.read(read_fd, 1):
                pass
        os._exit(1)

    # SIGINT and SIGTERM for the main thread only: a signal the kernel handed to the watch thread would
    # interrupt only its read, and Python runs handlers in the main thread alone, so a worker blocked
    # in the pool's queue would never see it (Pool.terminate() then waits for it forever)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _WORKER_SIGNALS) if hasattr(signal, "pthread_sigmask") else None
    try:
        threading.Thread(target=wait, name="simroll-parent-watch", daemon=True).start()
    finally:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


class ProcessExecutor(Executor):
    """``workers`` local processes that end with the parent (see :func:`_watch_parent`).

    A :class:`multiprocessing.pool.Pool`, not a ``ProcessPoolExecutor``: the pool's public
    ``terminate()`` ends the workers at once, even in the middle of a long simulation, which
    Ctrl-C needs and the executor offers no public way to do.
    """

    def __init__(self, workers: int):
        self.workers = workers
        fork = "fork" in multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if fork else "spawn")
        self._read, self._write = os.pipe()
        args = (self._read, self._write, os.getpid()) if fork else (-1, None, os.getpid())
        self._pool = ctx.Pool(processes=workers, initializer=_watch_parent, initargs=args)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        # chunksize 1: the work items are whole simulations, already coarse
        return self._pool.map(fn, items, chunksize=1)

    def close(self) -> None:
        """End the workers now, even in the middle of a run (after Ctrl-C the parent must not
        wait for a long simulation it no longer wants)."""
        if self._read < 0:  # closed already
            return
        self._pool.terminate()
        self._pool.join()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._read = self._write = -1


class DaskExecutor(Executor):
    """An existing Dask distributed cluster (the ``dask`` extra)."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--dask needs the dask extra: pip install 'simroll[dask]'") from None
        try:
            self._client = Client(address, timeout=10)
        except OSError as e:
            raise UsageError(f"--dask {address}: cannot reach the scheduler ({e})") from None
        self.workers = max(1, sum(self._client.nthreads().values()))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        futures = self._client.map(fn, list(items), pure=False)
        return self._client.gather(futures)

    def close(self) -> None:
        self._client.close()


def make_executor(workers: int = 1, dask: str | None = None) -> Executor:
    """An executor for ``workers`` local processes, or for the Dask scheduler at ``dask``."""
    if dask:
        return DaskExecutor(dask)
    if workers < 1:
        raise UsageError(f"workers={workers}: expected a positive number")
    return Executor() if workers == 1 else ProcessExecutor(workers)
