"""Molecule libraries: SELFIES -> canonical SMILES for every verb, and the streamed CSV file.

``decode_rows`` is the one SELFIES -> SMILES path (``Generator.sample``, ``decode`` and
``write_csv`` all use it). ``write_csv`` writes batches of drawn SELFIES as they come, decoding
batch i in worker processes while the network draws batch i + 1; the file appears complete or not
at all.
"""
from __future__ import annotations

import csv
import multiprocessing as mp
import os
import time
from typing import Iterable, Iterator

import numpy as np

from molgen.errors import MolgenError
from molgen.files import atomic_open
from molgen.parallel import n_workers
from molgen.progress import bar
from molgen.tokenizer import selfies_to_smiles, use_constraints

CSV_COLUMNS = ("SMILES", "valid", "selfies", "nll", "component", "seed")

Batches = Iterable[tuple[list[str], np.ndarray, np.ndarray]]  # (SELFIES strings, nll, component) per batch


def decode_rows(args: tuple[list[str], str]) -> list[tuple[str, str | None]]:
    """(SELFIES, canonical SMILES or None) for a chunk of SELFIES strings (runs in workers)."""
    selfies_list, constraints = args
    use_constraints(constraints)
    return [(s, selfies_to_smiles(s, constraints)) for s in selfies_list]


def sample_rows(batches: Batches, constraints: str, seed: int) -> list[dict]:
    """The rows of ``Generator.sample``: dicts with the CSV columns (SMILES is None when invalid)."""
    rows = []
    for selfies, nll, comp in batches:
        for (s, smiles), v, k in zip(decode_rows((selfies, constraints)), nll, comp):
            rows.append(_row(s, smiles, v, k, seed))
    return rows


def write_csv(
    path: str | os.PathLike,
    batches: Batches,
    n: int,
    constraints: str,
    seed: int,
    unique: bool = False,
    valid_only: bool = False,
    progress: bool = True,
) -> dict:
    """Stream the first ``n`` rows of ``batches`` that pass the filters to a CSV file; counts and rate."""
    start = time.perf_counter()
    seen: set[str] = set()
    written = drawn = n_valid = 0
    workers = n_workers()
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            shown = 0
            with bar(n, "sample", enabled=progress) as update:
                for selfies, nll, comp, decoded in _overlap(batches, pool, constraints, workers):
                    for (s, smiles), v, k in zip(decoded, nll, comp):
                        drawn += 1
                        n_valid += smiles is not None
                        if valid_only and smiles is None:
                            continue
                        if unique and smiles is not None:
                            if smiles in seen:
                                continue
                            seen.add(smiles)
                        writer.writerow(_csv_row(s, smiles, v, k, seed))
                        written += 1
                        if written == n:
                            break
                    update(min(written, n) - shown)
                    shown = min(written, n)
                    if written == n:
                        break
            if written < n:
                raise MolgenError(
                    f"only {written} of {n} molecules passed the filters after {drawn} draws; "
                    "lower -n or drop --unique/--valid-only"
                )
    except KeyboardInterrupt:
        if pool is not None:  # interrupted: stop the workers at once
            pool.terminate()
            pool = None
        raise
    finally:
        # otherwise let the workers finish the batch in flight (one): terminating a worker while it
        # writes a result leaves the result queue's lock held, and Pool.terminate() then hangs
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.perf_counter() - start
    return {
        "written": written,
        "drawn": drawn,
        "valid_fraction": n_valid / max(1, drawn),
        "seconds": seconds,
        "molecules_per_second": written / seconds,
    }


def _overlap(batches: Batches, pool, constraints: str, workers: int) -> Iterator[tuple]:
    """Decode batch i in worker processes while the network draws batch i + 1."""
    pending = None
    for selfies, nll, comp in batches:
        chunks = np.array_split(np.array(selfies, dtype=object), workers) if pool is not None else [selfies]
        jobs = [list(c) for c in chunks]
        if pool is not None:
            result = pool.map_async(decode_rows, [(c, constraints) for c in jobs])
        else:
            result = None
        if pending is not None:
            yield _finish(pending)
        pending = (selfies, nll, comp, jobs, result, constraints)
    if pending is not None:
        yield _finish(pending)


def _finish(pending):
    selfies, nll, comp, jobs, result, constraints = pending
    if result is None:
        decoded = decode_rows((jobs[0], constraints))
    else:
        decoded = [row for part in result.get() for row in part]
    return selfies, nll, comp, decoded


def _row(selfies: str, smiles: str | None, nll: float, component: int, seed: int) -> dict:
    return {"SMILES": smiles, "valid": smiles is not None, "selfies": selfies, "nll": float(nll), "component": int(component), "seed": seed}


def _csv_row(selfies: str, smiles: str | None, nll: float, component: int, seed: int) -> tuple:
    return (smiles or "", "true" if smiles is not None else "false", selfies, f"{nll:.4f}", int(component), seed)
