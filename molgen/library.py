"""Molecule libraries: drawn token ids -> SELFIES -> canonical SMILES for every verb, the filters
(valid, unique, substructure), the similarity to a seed, and the streamed output file.

``decode_rows`` is the one ids -> SMILES path (``Generator.sample``, ``decode`` and ``write`` all
use it). ``iter_rows`` decodes batch i in worker processes while the network draws batch i + 1 and
keeps the rows that pass the filters; ``write_library`` streams them to a .csv, .smi or .sdf file
(``molgen.formats``) that appears complete or not at all.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from molgen.errors import MolgenError
from molgen.formats import molecule_writer, output_format
from molgen.model.generate import Batch
from molgen.parallel import n_workers
from molgen.progress import bar
from molgen.tokenizer import SelfiesTokenizer

CSV_COLUMNS = ("SMILES", "valid", "selfies", "nll", "component", "seed")
NEAR_COLUMNS = ("seed_smiles", "similarity")  # added when molecules are drawn around seed molecules


@dataclass(frozen=True)
class Filters:
    """Which drawn molecules a library keeps; a filtered library keeps drawing until it has its rows."""

    valid_only: bool = False
    unique: bool = False
    scaffold: str | None = None  # a substructure (SMARTS or SMILES) every kept molecule contains

    @property
    def any(self) -> bool:
        return self.valid_only or self.unique or self.scaffold is not None

    def for_output(self, path: str | os.PathLike) -> "Filters":
        """These filters for a file at ``path``: a .smi or .sdf file holds structures, so valid molecules only."""
        return self if output_format(path) == ".csv" else Filters(True, self.unique, self.scaffold)


@dataclass
class Counts:
    """What ``iter_rows`` drew and kept (read after the rows are consumed)."""

    drawn: int = 0
    valid: int = 0
    written: int = 0
    start: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict:
        seconds = time.perf_counter() - self.start
        return {
            "written": self.written,
            "drawn": self.drawn,
            "valid_fraction": self.valid / max(1, self.drawn),
            "acceptance_rate": self.written / max(1, self.drawn),
            "seconds": seconds,
            "molecules_per_second": self.written / seconds,
        }


@functools.lru_cache(maxsize=8)
def substructure_query(text: str):
    """An RDKit query molecule from SMARTS (or SMILES); MolgenError when neither parses."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    query = Chem.MolFromSmarts(text) or Chem.MolFromSmiles(text)
    if query is None or query.GetNumAtoms() == 0:
        raise MolgenError(f"--scaffold {text!r}: not a SMARTS or SMILES substructure")
    return query


@functools.lru_cache(maxsize=4096)
def _seed_bits(smiles: str) -> np.ndarray:
    from molgen.metrics.molecules import parse
    from molgen.metrics.similarity import morgan_bits

    return morgan_bits(parse(smiles))


def tanimoto_to(smiles_mol, seed_smiles: str) -> float:
    """Tanimoto similarity (Morgan radius 2, 1024 bits, as the metrics) of an RDKit molecule to a seed SMILES."""
    from molgen.metrics.similarity import morgan_bits

    a, b = morgan_bits(smiles_mol), _seed_bits(seed_smiles)
    union = int(np.bitwise_count(a | b).sum())
    return int(np.bitwise_count(a & b).sum()) / union if union else 1.0


def decode_rows(args: tuple) -> list[tuple[str, str | None, bool, float | None]]:
    """(SELFIES, canonical SMILES or None, contains the scaffold, Tanimoto to its seed or None) per row.

    ``args`` = (token id rows, tokenizer, scaffold or None, seed SMILES per row or None); runs in workers.
    """
    rows, tokenizer, scaffold, seeds = args
    out = []
    for i, ids in enumerate(rows):
        selfies, smiles = tokenizer.decode(ids)
        keep, similarity = smiles is not None, None
        if smiles is not None and (scaffold is not None or seeds is not None):
            from molgen.metrics.molecules import parse

            mol = parse(smiles)
            if scaffold is not None:
                keep = mol.HasSubstructMatch(substructure_query(scaffold))
            if seeds is not None:
                similarity = tanimoto_to(mol, seeds[i])
        out.append((selfies, smiles, keep, similarity))
    return out


def iter_rows(
    batches: Iterable[Batch],
    n: int,
    tokenizer: SelfiesTokenizer,
    seed: int,
    filters: Filters = Filters(),
    seeds: Sequence[str] | None = None,
    counts: Counts | None = None,
    progress: bool = False,
    quota: np.ndarray | None = None,
) -> Iterator[dict]:
    """The first ``n`` rows (``n`` per seed molecule when ``seeds`` are given) that pass ``filters``.

    Row dicts have CSV_COLUMNS (SMILES None when invalid), plus NEAR_COLUMNS with ``seeds``. Raises
    MolgenError when the batches run out first. ``quota`` (``n`` per seed) is counted down in
    place as rows are kept, so that the latent source can stop drawing around seeds that are done.
    """
    if filters.scaffold is not None:
        substructure_query(filters.scaffold)  # a bad pattern fails here, not in a worker
    counts = counts if counts is not None else Counts()
    quota = np.full(len(seeds) if seeds else 1, n) if quota is None else quota
    total, seen = int(quota.sum()), set()
    workers = n_workers()
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        with bar(total, "sample", enabled=progress) as update:
            for batch, decoded in _overlap(batches, pool, tokenizer, filters.scaffold, seeds, workers):
                before = counts.written
                origins = batch.origin if batch.origin is not None else np.zeros(len(decoded), dtype=int)
                for (selfies, smiles, keep, similarity), nll, k, o in zip(decoded, batch.draws.nll.numpy(), batch.component, origins):
                    counts.drawn += 1
                    counts.valid += smiles is not None
                    if quota[o] == 0 or (filters.valid_only and smiles is None) or not (keep or filters.scaffold is None):
                        continue
                    if filters.unique and smiles is not None:
                        if smiles in seen:
                            continue
                        seen.add(smiles)
                    row = {"SMILES": smiles, "valid": smiles is not None, "selfies": selfies, "nll": float(nll),
                           "component": int(k), "seed": seed}  # fmt: skip
                    if seeds is not None:
                        row.update(seed_smiles=seeds[o], similarity=similarity)
                    quota[o] -= 1
                    counts.written += 1
                    yield row
                    if counts.written == total:
                        break
                update(counts.written - before)
                if counts.written == total:
                    return
        raise MolgenError(
            f"only {counts.written} of {total} molecules passed the filters after {counts.drawn} draws "
            f"(acceptance rate {counts.written / max(1, counts.drawn):.3g}); lower -n or relax --unique/--valid-only/--scaffold"
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


def write_library(
    path: str | os.PathLike,
    batches: Iterable[Batch],
    n: int,
    tokenizer: SelfiesTokenizer,
    seed: int,
    filters: Filters = Filters(),
    seeds: Sequence[str] | None = None,
    progress: bool = True,
    quota: np.ndarray | None = None,
) -> dict:
    """Stream the rows of ``iter_rows`` to ``path`` (.csv, .smi or .sdf by extension); counts and rate.

    A .smi or .sdf file holds structures, so it keeps only valid molecules (``Filters.for_output``).
    """
    fmt = output_format(path)
    filters = filters.for_output(path)
    columns = CSV_COLUMNS + (NEAR_COLUMNS if seeds is not None else ())
    counts = Counts()
    with molecule_writer(path, columns) as writer:
        for row in iter_rows(batches, n, tokenizer, seed, filters, seeds, counts, progress, quota):
            writer.write(row)
    return {"format": fmt[1:], **counts.summary()}


def _overlap(batches: Iterable[Batch], pool, tokenizer, scaffold, seeds, workers: int) -> Iterator[tuple]:
    """Decode batch i in worker processes while the network draws batch i + 1."""
    pending = None
    for batch in batches:
        rows = batch.draws.rows()
        row_seeds = [seeds[o] for o in batch.origin] if seeds is not None and batch.origin is not None else None
        bounds = np.linspace(0, len(rows), (workers if pool is not None else 1) + 1).astype(int)
        jobs = [(rows[a:b], tokenizer, scaffold, None if row_seeds is None else row_seeds[a:b]) for a, b in zip(bounds, bounds[1:])]
        result = pool.map_async(decode_rows, jobs) if pool is not None else None
        if pending is not None:
            yield _finish(*pending)
        pending = (batch, jobs, result)
    if pending is not None:
        yield _finish(*pending)


def _finish(batch: Batch, jobs: list, result) -> tuple[Batch, list]:
    parts = result.get() if result is not None else [decode_rows(job) for job in jobs]
    return batch, [row for part in parts for row in part]
