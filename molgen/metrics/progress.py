"""Progress bars for the long steps (tqdm on stderr, quiet when stderr is not a terminal)."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from tqdm import tqdm


@contextlib.contextmanager
def bar(total: int, desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar over ``total`` molecules; yields its ``update(n)``."""
    with tqdm(total=total, desc=desc, unit="mol", disable=None, mininterval=2, leave=False) as progress:
        yield progress.update
