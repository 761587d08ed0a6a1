"""Progress of long steps: a tqdm bar on a terminal, plain lines on stderr otherwise.

Under ``make``, in CI or piped to a log, stderr is not a terminal and a bar would be invisible (or
garbage); there a step of at least ``LINE_MIN_TOTAL`` items prints a line every ``LINE_EVERY`` of
the way (and at the end) saying what it is, how far it is and about how long is left.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

LINE_EVERY = 0.05  # a line every 5% of the way
LINE_MIN_TOTAL = 10_000  # shorter steps stay quiet off a terminal
T = TypeVar("T")


def say(message: str) -> None:
    """One line on stderr (what is about to happen, where it is cached)."""
    print(f"molgen: {message}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _Lines:
    """tqdm's ``update``/``close`` as plain lines every ``LINE_EVERY`` of ``total``."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.start = time.monotonic()
        self.next_mark = LINE_EVERY

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.total and self.done / self.total >= self.next_mark and self.done < self.total:
            while self.next_mark <= self.done / self.total:
                self.next_mark += LINE_EVERY
            spent = time.monotonic() - self.start
            left = spent * (self.total - self.done) / max(self.done, 1)
            say(f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%), "
                f"{_duration(spent)} so far, about {_duration(left)} left")  # fmt: skip

    def close(self) -> None:
        say(f"{self.desc}: {self.done:,} {self.unit} done in {_duration(time.monotonic() - self.start)}")


def _progress(total: int, desc: str, unit: str, enabled: bool, quiet_below: int):
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, mininterval=2, leave=False)
    if total >= quiet_below:
        return _Lines(total, desc, unit)
    return tqdm(total=total, disable=True)


@contextlib.contextmanager
def bar(
    total: int, desc: str, unit: str = "mol", enabled: bool = True, quiet_below: int = LINE_MIN_TOTAL
) -> Iterator[Callable[[int], None]]:
    """Progress over ``total`` items; yields its ``update(n)``. Off a terminal, steps of fewer than
    ``quiet_below`` items print nothing."""
    progress = _progress(total, desc, unit, enabled, quiet_below)
    try:
        yield progress.update
    finally:
        progress.close()


def track(
    items: Iterable[T], total: int, desc: str, unit: str = "mol", enabled: bool = True, quiet_below: int = LINE_MIN_TOTAL
) -> Iterator[T]:
    """Yield ``items`` (``total`` of them), showing progress."""
    with bar(total, desc, unit, enabled, quiet_below) as update:
        for item in items:
            yield item
            update(1)
