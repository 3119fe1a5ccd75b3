"""Objects one Airflow process shares among all the greenflow tasks and triggers it hosts.

A triggerer runs a thousand waiting tasks in one process: one database engine per ledger URL (the
core's :mod:`greenflow.ledger.registry`) and one provider client per (provider, connection, options)
keep that at one connection pool and one HTTP session instead of a thousand. The forecast cache on top
of them (:func:`greenflow.lifecycle.shared_cache`) is what makes those tasks share one fetch per region
per refresh.

Triggers run on the triggerer's event loop, where nothing may block: :func:`run_blocking` is how they
hand every piece of blocking or CPU-heavy work (building a spec, opening a ledger, planning) to
greenflow's own small thread pool. This module imports nothing heavy at import time, because the
triggerer imports trigger classes on its event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from greenflow.intensity.providers.base import IntensityProvider
    from greenflow.ledger import Ledger

P = ParamSpec("P")
R = TypeVar("R")

# Few threads on purpose: greenflow's blocking work is mostly CPU (planning) plus short database and
# HTTP calls under the cache's single flight, so more threads would only fight the event loop's thread
# for the GIL. A pool of our own (not the loop's default executor) also keeps a thousand queued re-plans
# from delaying Airflow's own work there: the triggerer's async logging runs in the default executor.
WORKER_THREADS = 4

_lock = threading.Lock()
_build_lock = threading.Lock()
_providers: dict[str, IntensityProvider] = {}
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None


def worker_pool() -> ThreadPoolExecutor:
    """The process's greenflow thread pool (created on first use, and again in a forked child)."""
    global _pool, _pool_pid
    pid = os.getpid()
    with _lock:  # held for microseconds: no worker ever waits on anything while holding it
        if _pool is None or _pool_pid != pid:
            # A pool inherited through fork() has no threads behind it: the triggerer forks its runner.
            _pool = ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="greenflow")
            _pool_pid = pid
        return _pool


async def run_blocking(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``func(*args, **kwargs)`` in greenflow's thread pool, awaited without blocking the event loop.

    Like :func:`asyncio.to_thread`, the call sees the caller's context variables (Airflow routes a
    trigger's log lines to that trigger's log through them).
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(worker_pool(), call)


def ledger_at(url: str) -> Ledger:
    """The process's :class:`Ledger` for ``url`` (the core's registry: opened, schema checked, once). Blocking."""
    from greenflow.ledger.registry import shared_ledger

    return shared_ledger(url)


def provider_for(name: str, options: Mapping[str, Any], *, source: str | None) -> IntensityProvider:
    """The process's provider client for ``name`` built from ``options``. Blocking (may read a trace).

    ``source`` names where credentials came from (the connection id): options holding secrets are
    keyed by it rather than by their values, so no secret is ever part of a key or a log line.
    """
    from greenflow.intensity.providers.base import get_provider

    plain = {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, type(None)))}
    key = json.dumps([name, source, plain, sorted(options)], sort_keys=True, default=str)
    # Its own lock, held while a provider is built (a trace provider reads its file): worker_pool(),
    # called on the event loop, must never wait behind that.
    with _build_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = get_provider(name, **dict(options))
        return provider
