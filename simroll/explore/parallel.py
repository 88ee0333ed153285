"""Many simulations at once: local processes or an existing Dask cluster.

Every executor returns results in input order, and callers decide from the results in that
order, so what a search or a sweep concludes never depends on how many workers ran it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
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

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ProcessExecutor(Executor):
    """``workers`` local processes."""

    def __init__(self, workers: int):
        self.workers = workers
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


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
