"""A run's ``metrics.csv``: one row per logged step, continued across resumes and stretches.

A Lightning ``Logger`` (public API) that keeps the rows of earlier stretches, rewrites the file
atomically at every save (a killed run never leaves half a line), and widens the header when a new
metric appears (validation columns arrive after the first training rows). ``trim`` drops the rows
logged after the checkpoint a run resumes from.
"""
from __future__ import annotations

import bisect
import csv
import io
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from molgen.files import atomic_open


def _step(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, complete rows) of a metrics file; a partial last line is dropped."""
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        rows = [dict(zip(header, r)) for r in reader if len(r) == len(header)]
    return header, rows


def write_rows(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` under ``header`` (atomically; missing cells empty)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def trim(path: Path, before_step: int) -> None:
    """Keep the rows of ``path`` logged before ``before_step``; remove the file at step 0."""
    if not path.is_file():
        return
    if before_step <= 0:
        path.unlink()
        return
    header, rows = read_rows(path)
    write_rows(path, header, [r for r in rows if _step(r.get("step", "")) < before_step])


class RunMetrics(Logger):
    """``metrics.csv`` in a run folder (columns sorted by name, as Lightning's CSVLogger writes them)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._header: list[str] | None = None
        self._rows: list[dict[str, Any]] = []
        self._dirty = False

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    def _load(self) -> None:
        if self._header is None:  # read on first use: after the resume has trimmed the file
            self._header, self._rows = read_rows(self.path)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run's config is in config.yaml and in every checkpoint."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._load()
        row = {key: value for key, value in metrics.items()}
        row["step"] = step if step is not None else row.get("step", "")
        self._rows.append(row)
        self._header = sorted(set(self._header) | set(row))
        self._dirty = True

    @rank_zero_only
    def save(self) -> None:
        if self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_rows(self.path, self._header or [], self._rows)
            self._dirty = False

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def series(text: str, keys: list[str] | tuple[str, ...]) -> dict[str, list[tuple[float, float]]]:
    """(training molecules seen, value) of each key in metrics.csv ``text``; a validation row takes
    the molecule count of the last training row at or before its step."""
    rows = list(csv.DictReader(io.StringIO(text)))
    counted = sorted((float(r["step"]), float(r["train/molecules"])) for r in rows if r.get("train/molecules"))
    steps = [step for step, _ in counted]
    out: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    for r in rows:
        for key in keys:
            if r.get(key):
                i = bisect.bisect_right(steps, float(r["step"])) - 1
                out[key].append((counted[i][1] if i >= 0 else 0.0, float(r[key])))
    return out
