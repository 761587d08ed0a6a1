"""Morgan fingerprints (radius 2, 1024 bits) and vectorised Tanimoto statistics: nearest-neighbour
similarity (SNN) and internal diversity (IntDiv, IntDiv2).

Fingerprints travel bit-packed (128 bytes per molecule). Intersections are exact integer counts and
the Tanimoto ratio is taken in float32, as MOSES does, on one of two paths that give identical SNN
values (IntDiv's sums are added in another order: equal to ~1e-9):
- the kernel (``_tanimoto.c``, built at install when a C compiler is there): AND + popcount of 512
  bits per instruction on CPUs with AVX-512 VPOPCNTDQ, one thread per core;
- the portable path: int8 x int8 -> int32 matrix products of the unpacked bits (VNNI where torch
  has it), used on every other CPU or when the extension was not built.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

try:
    from molgen.metrics import _tanimoto as _compiled
except ImportError:  # built without a C compiler: the portable path only
    _compiled = None

N_BITS = 1024
RADIUS = 2
_BLOCK = 4096


@functools.lru_cache(maxsize=1)
def _generator():
    return rdFingerprintGenerator.GetMorganGenerator(radius=RADIUS, fpSize=N_BITS)


def morgan_bits(mol: Chem.Mol) -> np.ndarray:
    """Morgan fingerprint of ``mol`` (radius 2, 1024 bits), bit-packed to 128 uint8."""
    return np.packbits(_generator().GetFingerprintAsNumPy(mol))


def popcounts(packed: np.ndarray) -> np.ndarray:
    """Number of set bits in each row of a packed fingerprint matrix (int64)."""
    packed = np.ascontiguousarray(packed)
    if packed.shape[1] % 8 == 0:
        return np.bitwise_count(packed.view(np.uint64)).sum(axis=1, dtype=np.int64)
    return np.unpackbits(packed, axis=1).sum(axis=1, dtype=np.int64)


def _unpack(packed: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed, axis=1).view(np.int8))


class _Scratch:
    """Output buffers reused from block to block. Each block's result is 50-130 MB; allocating it
    afresh costs page faults, which were a third of the SNN's time (system time)."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < rows * cols:
            buffer = self._buffers[name] = torch.empty(rows * cols, dtype=dtype)
        return buffer[: rows * cols].view(rows, cols)


def _intersections(a: torch.Tensor, b: torch.Tensor, scratch: _Scratch | None = None) -> torch.Tensor:
    """Exact |A_i & B_j| for 0/1 int8 rows: int32 matrix [len(a), len(b)]."""
    if len(a) > 16 and len(b) > 16:
        out = scratch("common", len(a), len(b), torch.int32) if scratch is not None else None
        try:
            return torch._int_mm(a, b.T, out=out)
        except (RuntimeError, AttributeError):
            pass
    return (a.float() @ b.float().T).round_().int()


def _tanimoto(
    common: torch.Tensor, count_a: torch.Tensor, count_b: torch.Tensor, scratch: _Scratch | None = None
) -> torch.Tensor:
    """Tanimoto matrix from intersections and popcounts (float32); two empty fingerprints give 1."""
    shape = (len(count_a), len(count_b))
    sim = scratch("similarity", *shape, torch.float32) if scratch is not None else torch.empty(shape)
    torch.add(count_a[:, None], count_b[None, :], out=sim)
    sim.sub_(common)  # the union
    torch.div(common, sim, out=sim)
    return sim.nan_to_num_(nan=1.0)


def _blocks(n: int, size: int = _BLOCK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def nearest_similarity(generated: np.ndarray, reference: np.ndarray, progress=None) -> np.ndarray:
    """For each generated fingerprint, the largest Tanimoto similarity to any reference fingerprint.

    Both arguments are packed fingerprint matrices. ``progress`` is an optional callable told how
    many generated rows are done.
    """
    if _kernel_fits(generated, reference):
        return _kernel_nearest(generated, reference, progress)
    return _portable_nearest(generated, reference, progress)


def _portable_nearest(generated: np.ndarray, reference: np.ndarray, progress=None) -> np.ndarray:
    """``nearest_similarity`` by int8 matrix products. The reference is grouped by popcount: within a
    group the similarity grows with the intersection, so only the row-wise largest intersection per
    group needs a ratio."""
    gen_counts = torch.from_numpy(popcounts(generated)).float()
    ref_pop = popcounts(reference)
    order = np.argsort(ref_pop, kind="stable")
    ref = _unpack(reference[order])
    ref_pop = ref_pop[order]
    ref_counts = torch.from_numpy(ref_pop).float()
    groups = popcount_groups(ref_pop)
    best = torch.zeros(len(generated), dtype=torch.float32)
    scratch = _Scratch()
    for rows in _blocks(len(generated)):
        gen = _unpack(generated[rows])
        a = gen_counts[rows]
        row_best = best[rows]
        for start, stop, uniform in groups:
            common = _intersections(gen, ref[start:stop], scratch)
            if uniform:
                largest = common.amax(dim=1).float()
                sim = _tanimoto(largest[:, None], a, ref_counts[start : start + 1])[:, 0]
            else:
                sim = _tanimoto(common, a, ref_counts[start:stop], scratch).amax(dim=1)
            torch.maximum(row_best, sim, out=row_best)
        if progress is not None:
            progress(rows.stop - rows.start)
    return best.numpy().astype(np.float64)


def popcount_groups(sorted_counts: np.ndarray, min_uniform: int = 256, size: int = 2 * _BLOCK) -> list:
    """Split a popcount-sorted reference into (start, stop, uniform) column blocks: runs of one
    popcount of at least ``min_uniform`` columns are uniform; smaller runs are pooled."""
    values, starts, lengths = np.unique(sorted_counts, return_index=True, return_counts=True)
    blocks = []
    pool_start = None
    for start, length in zip(starts.tolist(), lengths.tolist()):
        if length >= min_uniform:
            if pool_start is not None:
                blocks.extend((s, min(s + size, start), False) for s in range(pool_start, start, size))
                pool_start = None
            blocks.extend((s, min(s + size, start + length), True) for s in range(start, start + length, size))
        elif pool_start is None:
            pool_start = start
    if pool_start is not None:
        end = len(sorted_counts)
        blocks.extend((s, min(s + size, end), False) for s in range(pool_start, end, size))
    return blocks


def internal_diversity(fingerprints: np.ndarray, progress=None) -> tuple[float, float]:
    """(IntDiv, IntDiv2) of a set of packed fingerprints, as MOSES defines them:
    IntDiv = 1 - mean over all ordered pairs (self-pairs included) of T;
    IntDiv2 = 1 - mean over molecules i of sqrt(mean over j of T_ij^2)."""
    n = len(fingerprints)
    if n == 0:
        return float("nan"), float("nan")
    if _kernel_fits(fingerprints):
        sums, squares = _kernel_similarity_sums(fingerprints, progress)
        return 1.0 - float(sums.sum()) / (n * n), 1.0 - float(np.sqrt(squares / n).mean())
    counts = torch.from_numpy(popcounts(fingerprints)).float()
    bits = _unpack(fingerprints)
    row_sum = torch.zeros(n, dtype=torch.float64)
    row_sq = torch.zeros(n, dtype=torch.float64)
    blocks = list(_blocks(n))
    scratch = _Scratch()
    for i, rows in enumerate(blocks):
        for cols in blocks[i:]:
            common = _intersections(bits[rows], bits[cols], scratch)
            sim = _tanimoto(common, counts[rows], counts[cols], scratch)
            mirrored = cols != rows  # an off-diagonal block stands for its transpose too
            # block sums in float32 (at most 4,096 terms each), accumulated across blocks in float64
            row_sum[rows] += sim.sum(dim=1)
            if mirrored:
                row_sum[cols] += sim.sum(dim=0)
            sim.square_()
            row_sq[rows] += sim.sum(dim=1)
            if mirrored:
                row_sq[cols] += sim.sum(dim=0)
        if progress is not None:
            progress(rows.stop - rows.start)
    int_div = 1.0 - float(row_sum.sum()) / (n * n)
    int_div2 = 1.0 - float((row_sq / n).sqrt().mean())
    return int_div, int_div2


# ---------------------------------------------------------------- the AVX-512 kernel (_tanimoto.c)

_LANES = 8  # the kernel reads columns 8 at a time and rows 8 at a time
_PAD_POPCOUNT = 1 << 20  # padding columns: zero bits, a union this large makes their similarity 0
_CHUNK = 256  # rows per kernel call (a multiple of 8): progress granularity and work for the thread pool


def kernel_available() -> bool:
    """Whether the compiled Tanimoto kernel is built and this CPU runs it (AVX-512 VPOPCNTDQ)."""
    return _compiled is not None and _compiled.supported()


def _kernel_fits(*packed: np.ndarray) -> bool:
    """The kernel is available and every matrix holds 1024-bit fingerprints (128 uint8 per row);
    other widths take the portable path."""
    return kernel_available() and all(p.dtype == np.uint8 and p.shape[1:] == (N_BITS // 8,) for p in packed)


def _kernel_rows(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows as uint64 [n8, 16] with popcounts int32 [n8], zero-padded to a multiple of 8 rows."""
    n = len(packed)
    words = np.zeros((-(-n // _LANES) * _LANES, N_BITS // 64), dtype=np.uint64)
    words[:n] = np.ascontiguousarray(packed).view(np.uint64)
    counts = np.zeros(len(words), dtype=np.int32)
    counts[:n] = popcounts(packed)
    return words, counts


def _kernel_columns(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns as uint64 [n8 / 8, 16, 8] (8 fingerprints side by side, word-major) with popcounts;
    padding columns get a popcount that makes their similarity exactly 0."""
    words, counts = _kernel_rows(packed)
    counts[len(packed) :] = _PAD_POPCOUNT
    blocks = np.ascontiguousarray(words.reshape(-1, _LANES, N_BITS // 64).transpose(0, 2, 1))
    return blocks, counts


def _run_chunks(n_real: int, n_rows: int, work: Callable[[slice], None], progress=None) -> None:
    """``work`` on chunks of ``_CHUNK`` of the ``n_rows`` padded rows, one thread per torch thread
    (the kernel releases the GIL; chunks write disjoint slices); ``progress`` is told how many of the
    first ``n_real`` (real) rows each chunk held."""
    assert _CHUNK % _LANES == 0, "kernel calls take rows 8 at a time"
    chunks = [slice(start, min(start + _CHUNK, n_rows)) for start in range(0, n_rows, _CHUNK)]
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        futures = [pool.submit(work, rows) for rows in chunks]
        for rows, future in zip(chunks, futures):
            future.result()
            if progress is not None:
                progress(max(0, min(rows.stop, n_real) - rows.start))


def _kernel_nearest(generated: np.ndarray, reference: np.ndarray, progress=None) -> np.ndarray:
    """``nearest_similarity`` on the kernel (same float32 values as the portable path)."""
    rows, row_counts = _kernel_rows(generated)
    columns, column_counts = _kernel_columns(reference)
    best = np.zeros(len(rows), dtype=np.float32)
    _run_chunks(
        len(generated),
        len(rows),
        lambda r: _compiled.nearest(rows[r], row_counts[r], columns, column_counts, best[r]),
        progress,
    )
    return best[: len(generated)].astype(np.float64)


def _kernel_similarity_sums(fingerprints: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Per molecule, sum_j T_ij and sum_j T_ij^2 over all molecules j (float64)."""
    rows, row_counts = _kernel_rows(fingerprints)
    columns, column_counts = _kernel_columns(fingerprints)
    sums, squares = np.zeros(len(rows)), np.zeros(len(rows))
    _run_chunks(
        len(fingerprints),
        len(rows),
        lambda r: _compiled.similarity_sums(rows[r], row_counts[r], columns, column_counts, sums[r], squares[r]),
        progress,
    )
    n = len(fingerprints)
    return sums[:n], squares[:n]

