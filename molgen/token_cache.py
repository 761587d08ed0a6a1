"""Tokenized molecule sets: SMILES file -> canonical SMILES -> SELFIES ids, cached per file as .npz."""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from molgen.chemistry import canonical_or_reason
from molgen.errors import MolgenError
from molgen.files import atomic_path, check_output_path, default_cache_dir, file_sha256, pack_strings, unpack_strings
from molgen.parallel import parallel_map
from molgen.readers import Reject, handle_invalid, read_rows
from molgen.tokenizer import SelfiesTokenizer, smiles_to_tokens

CACHE_VERSION = 2


@dataclass
class TokenizedSet:
    """Token ids of many molecules stored flat: molecule i is ``ids[offsets[i]:offsets[i+1]]``."""

    ids: np.ndarray  # int16, each molecule's SELFIES ids followed by <eos>
    offsets: np.ndarray  # int64, length n + 1
    smiles: list[str] | None = None  # canonical SMILES, same order
    n_rows: int = 0  # rows read, valid or not
    rejects: list[Reject] | None = None
    lines: np.ndarray | None = None  # int64, the line of each molecule in its file (1-based, header counted)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Token count of each molecule, ``<eos>`` included."""
        return np.diff(self.offsets)

    def get(self, i: int) -> np.ndarray:
        """Token ids of molecule ``i``."""
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


def _tokenize_one(args: tuple[str, str]) -> tuple[str | None, list[str] | str]:
    """(canonical SMILES, SELFIES tokens) or (None, reason) for one raw string."""
    smiles, constraints = args
    canonical, why = canonical_or_reason(smiles)
    if canonical is None:
        return None, why
    try:
        return canonical, smiles_to_tokens(canonical, constraints)
    except MolgenError as err:
        return None, str(err)



def _save_cache(path: Path, tokens: list[str], data: TokenizedSet) -> None:
    rejects = data.rejects or []
    arrays = {
        "version": np.array(CACHE_VERSION),
        "tokens": pack_strings(tokens),
        "ids": data.ids,
        "offsets": data.offsets,
        "smiles": pack_strings(data.smiles or []),
        "n_rows": np.array(data.n_rows),
        "lines": np.asarray(data.lines if data.lines is not None else [], dtype=np.int64),
        "reject_lines": np.array([r.line for r in rejects], dtype=np.int64),
        "reject_smiles": pack_strings([r.smiles for r in rejects]),
        "reject_reasons": pack_strings([r.reason for r in rejects]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def _load_cache(path: Path) -> tuple[list[str], TokenizedSet] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                return None
            lines = z["reject_lines"].tolist()
            rejects = [Reject(*r) for r in zip(lines, unpack_strings(z["reject_smiles"]), unpack_strings(z["reject_reasons"]))]
            lines = z["lines"] if len(z["lines"]) == len(z["offsets"]) - 1 else None
            data = TokenizedSet(z["ids"], z["offsets"], unpack_strings(z["smiles"]), int(z["n_rows"]), rejects, lines)
            return unpack_strings(z["tokens"]), data
    except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile):
        return None  # a damaged cache is rebuilt


def load_tokenized(
    path: str | os.PathLike,
    tokenizer: SelfiesTokenizer | None = None,
    constraints: str = "strict",
    smiles_column: str | None = None,
    on_invalid: str = "error",
    rejects_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_tokens: int | None = None,
) -> tuple[SelfiesTokenizer, TokenizedSet]:
    """Read, canonicalize and tokenize a SMILES file, building the vocabulary unless one is given.

    Results are cached once per file (keyed by its sha256 and the column, holding the file's own
    vocabulary; a given vocabulary is applied by remapping ids), so later loads take seconds. ``max_tokens`` rejects
    molecules longer than a model's length cap (``<eos>`` included).
    """
    path = Path(path)
    if rejects_path is not None:
        check_output_path(rejects_path)
    if tokenizer is not None:
        constraints = tokenizer.constraints
    # One cache per file, holding the file's own vocabulary; a given vocabulary is applied by
    # remapping ids below. The constraints are not part of the key: they only change which bond
    # counts selfies accepts, and every RDKit-valid molecule encodes to the same tokens under both.
    # (The trailing null is the vocabulary slot of the version-2 key, kept so caches stay valid.)
    key = json.dumps([CACHE_VERSION, file_sha256(path), smiles_column, None])
    cache_file = Path(cache_dir or default_cache_dir()) / f"tok-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    cached = _load_cache(cache_file)
    if cached is not None:
        tokens, data = cached
    else:
        strings, numbers = read_rows(path, smiles_column)
        results = parallel_map(_tokenize_one, [(s, constraints) for s in strings], desc=f"tokenize {path.name}")
        rejects = [Reject(n, s, str(t)) for n, s, (c, t) in zip(numbers, strings, results) if c is None]
        good = [(n, s, c, t) for n, s, (c, t) in zip(numbers, strings, results) if c is not None]
        vocab: set[str] = set()
        for _, _, _, t in good:
            vocab.update(t)
        tokens = SelfiesTokenizer.from_token_set(vocab, constraints).tokens
        index = {t: i for i, t in enumerate(tokens)}
        eos = SelfiesTokenizer.eos_id
        id_lists = [[index[t] for t in toks] + [eos] for _, _, _, toks in good]
        lengths = np.array([len(x) for x in id_lists], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.fromiter((i for x in id_lists for i in x), dtype=np.int16, count=int(offsets[-1]))
        lines = np.array([n for n, _, _, _ in good], dtype=np.int64)
        data = TokenizedSet(ids, offsets, [c for _, _, c, _ in good], len(strings), rejects, lines)
        _save_cache(cache_file, tokens, data)
    if tokenizer is not None and tokens != tokenizer.tokens:
        data = _remap(data, tokens, tokenizer)
    tok = tokenizer or SelfiesTokenizer(tokens, constraints)
    if max_tokens is not None:
        data = _apply_length_cap(data, max_tokens, path)
    handle_invalid(path, data.rejects or [], on_invalid, rejects_path)
    if len(data) == 0:
        raise MolgenError(f"{path}: no valid molecules")
    return tok, data


def _remap(data: TokenizedSet, tokens: list[str], tokenizer: SelfiesTokenizer) -> TokenizedSet:
    """Express ``data`` (ids over ``tokens``) in ``tokenizer``'s ids; molecules with unknown tokens become rejects."""
    lut = np.array([tokenizer.index.get(t, -1) for t in tokens], dtype=np.int64)
    mapped = lut[data.ids.astype(np.int64)]
    bad = np.flatnonzero(mapped < 0)
    owner = np.searchsorted(data.offsets, bad, side="right") - 1  # molecule of each unknown position
    first_bad = {}
    for pos, mol in zip(bad.tolist(), owner.tolist()):
        first_bad.setdefault(mol, pos)
    lines = data.lines if data.lines is not None else np.full(len(data), -1, dtype=np.int64)
    smiles = data.smiles or [""] * len(data)
    rejects = list(data.rejects or []) + [
        Reject(int(lines[m]), smiles[m], f"unknown SELFIES token {tokens[data.ids[p]]} (not in the vocabulary)")
        for m, p in first_bad.items()
    ]
    rejects.sort(key=lambda r: r.line)
    keep = np.setdiff1d(np.arange(len(data)), np.fromiter(first_bad, dtype=np.int64, count=len(first_bad)))
    remapped = TokenizedSet(mapped.astype(np.int16), data.offsets, data.smiles, data.n_rows, rejects, data.lines)
    return subset(remapped, keep, rejects=rejects)


def _apply_length_cap(data: TokenizedSet, max_tokens: int, path: Path) -> TokenizedSet:
    lengths = data.lengths
    if (lengths <= max_tokens).all():
        return data
    keep = np.flatnonzero(lengths <= max_tokens)
    too_long = np.flatnonzero(lengths > max_tokens)
    smiles = data.smiles or [""] * len(data)
    lines = data.lines if data.lines is not None else np.full(len(data), -1)
    rejects = list(data.rejects or []) + [
        Reject(int(lines[i]), smiles[i], f"{lengths[i]} tokens, longer than the model's cap of {max_tokens}")
        for i in too_long
    ]
    return subset(data, keep, rejects=sorted(rejects, key=lambda r: r.line))


def subset(data: TokenizedSet, index: Sequence[int] | np.ndarray, rejects: list[Reject] | None = None) -> TokenizedSet:
    """A TokenizedSet holding the molecules at ``index`` (in that order)."""
    index = np.asarray(index, dtype=np.int64)
    lengths = data.lengths[index]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    positions = np.repeat(data.offsets[index] - offsets[:-1], lengths) + np.arange(offsets[-1])
    ids = data.ids[positions]
    smiles = [data.smiles[i] for i in index] if data.smiles else None
    lines = data.lines[index] if data.lines is not None else None
    rejects = data.rejects if rejects is None else rejects
    return TokenizedSet(ids.astype(np.int16), offsets, smiles, data.n_rows, rejects, lines)


def dataset_stats(
    path: str | os.PathLike,
    smiles_column: str | None = None,
    constraints: str = "strict",
    on_invalid: str = "skip",
    rejects_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Row count, invalid count, vocabulary size and token-length statistics of a SMILES file."""
    tok, data = load_tokenized(
        path, None, constraints, smiles_column, on_invalid, rejects_path, cache_dir=cache_dir
    )
    lengths = data.lengths
    return {
        "file": str(path),
        "rows": data.n_rows,
        "valid": len(data),
        "invalid": len(data.rejects or []),
        "constraints": constraints,
        "vocabulary_size": len(tok),
        "tokens_mean": float(lengths.mean()),
        "tokens_max": int(lengths.max()),
        "tokens_min": int(lengths.min()),
    }
