"""Per-molecule work on every core: the worker count and a forked process-pool map."""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Sequence

from molgen.progress import track

_PARALLEL_MIN_ROWS = 5000  # below this, starting the pool costs more than it saves


def n_workers() -> int:
    """Worker processes for per-molecule work: ``$MOLGEN_WORKERS`` or every core."""
    return max(1, int(os.environ.get("MOLGEN_WORKERS", os.cpu_count() or 1)))


def parallel_map(func: Callable, items: Sequence, desc: str = "", chunksize: int = 2000) -> list:
    """``[func(x) for x in items]`` on every core (fork), with a progress bar for long inputs."""
    workers = n_workers()
    if workers == 1 or len(items) < _PARALLEL_MIN_ROWS:
        return [func(x) for x in items]
    with mp.get_context("fork").Pool(workers) as pool:
        it = pool.imap(func, items, chunksize=chunksize)
        return list(track(it, len(items), desc))
