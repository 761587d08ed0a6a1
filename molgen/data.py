"""Reading SMILES files (CSV/TSV/.smi, gzipped or not), canonicalization, rejects, token cache."""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import multiprocessing as mp
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from rdkit import Chem, RDLogger

from molgen.errors import MolgenError
from molgen.files import atomic_open, atomic_path, check_output_path
from molgen.progress import track
from molgen.tokenizer import SelfiesTokenizer, smiles_to_tokens

RDLogger.DisableLog("rdApp.*")

SMILES_COLUMNS = ("SMILES", "smiles", "Smiles", "canonical_smiles", "CANONICAL_SMILES", "smi", "SMI", "mol", "molecule")
ON_INVALID = ("error", "skip")
CACHE_VERSION = 2
_PARALLEL_MIN_ROWS = 5000


def n_workers() -> int:
    """Worker processes for per-molecule work: ``$MOLGEN_WORKERS`` or every core."""
    return max(1, int(os.environ.get("MOLGEN_WORKERS", os.cpu_count() or 1)))


def _open_text_lines(path: Path) -> Iterable[tuple[int, str]]:
    """Yield (line number, decoded line) with clear errors for binary or non-UTF-8 input."""
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise MolgenError(f"{path}: no such file") from None
    except OSError as err:
        raise MolgenError(f"{path}: cannot open: {err.strerror}") from None
    with raw:
        head = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
        try:
            number = 0
            for chunk in stream:
                for line in chunk.rstrip(b"\r\n").split(b"\r"):  # a lone CR ends a line too (old Mac files)
                    number += 1
                    if b"\x00" in line:
                        raise MolgenError(f"{path}:{number}: binary data (NUL byte); expected a text SMILES file")
                    try:  # utf-8-sig drops the byte-order mark that spreadsheet programs put before the header
                        yield number, line.decode("utf-8-sig" if number == 1 else "utf-8")
                    except UnicodeDecodeError as err:
                        raise MolgenError(f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except (OSError, EOFError, zlib.error) as err:
            raise MolgenError(f"{path}: corrupt or truncated gzip file ({err})") from None


def _file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".smi", ".smiles", ".txt")):
        return "smi"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    return "csv"


def read_rows(path: str | os.PathLike, smiles_column: str | None = None) -> tuple[list[str], list[int]]:
    """Raw SMILES strings of a file with the line number of each (1-based, header counted)."""
    path = Path(path)
    fmt = _file_format(path)
    lines = _open_text_lines(path)
    strings: list[str] = []
    numbers: list[int] = []
    if fmt == "smi":
        for number, line in lines:
            fields = line.split()
            if not fields:
                continue
            if not strings and number == 1 and fields[0] in SMILES_COLUMNS:
                continue  # a header line
            strings.append(fields[0])
            numbers.append(number)
        if not strings:
            raise MolgenError(f"{path}: no SMILES found (empty file)")
        return strings, numbers

    delimiter = "\t" if fmt == "tsv" else ","
    header = None
    for number, line in lines:
        if line.strip():
            header = _csv_fields(line, delimiter, path, number)
            break
    if header is None:
        raise MolgenError(f"{path}: empty file")
    if smiles_column is not None:
        if smiles_column not in header:
            raise MolgenError(f"{path}: no column {smiles_column!r}; columns found: {', '.join(header)}")
        col = header.index(smiles_column)
    else:
        found = [c for c in SMILES_COLUMNS if c in header]
        if not found:
            raise MolgenError(
                f"{path}: no SMILES column found (columns: {', '.join(header)}); name it with --smiles-column"
            )
        col = header.index(found[0])
    for number, line in lines:
        if not line.strip():
            continue
        fields = _csv_fields(line, delimiter, path, number) if ('"' in line) else line.split(delimiter)
        strings.append(fields[col].strip() if col < len(fields) else "")
        numbers.append(number)
    if not strings:
        raise MolgenError(f"{path}: header only, no rows")
    return strings, numbers


def _csv_fields(line: str, delimiter: str, path: Path, number: int) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error as err:
        raise MolgenError(f"{path}:{number}: cannot read this CSV line ({err})") from None


def read_column(path: str | os.PathLike, smiles_column: str | None = None) -> list[str]:
    """Raw strings of the SMILES column of a CSV/TSV/.smi file, gzipped or not."""
    return read_rows(path, smiles_column)[0]


def canonical_or_reason(smiles: str) -> tuple[str | None, str]:
    """(canonical SMILES, "") or (None, why RDKit rejected it)."""
    if not smiles:
        return None, "empty SMILES"
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None, "cannot parse SMILES"
    if mol.GetNumAtoms() == 0:
        return None, "no atoms"
    try:
        Chem.SanitizeMol(mol)
    except Exception as err:  # RDKit raises several sanitization exception types
        return None, str(err).splitlines()[0] or type(err).__name__
    return Chem.MolToSmiles(mol), ""


def canonicalize(smiles: str) -> str | None:
    """Canonical RDKit SMILES, or None when the string is not a valid molecule."""
    return canonical_or_reason(smiles)[0]


def parallel_map(func: Callable, items: Sequence, desc: str = "", chunksize: int = 2000) -> list:
    """``[func(x) for x in items]`` on every core (fork), with a progress bar for long inputs."""
    workers = n_workers()
    if workers == 1 or len(items) < _PARALLEL_MIN_ROWS:
        return [func(x) for x in items]
    with mp.get_context("fork").Pool(workers) as pool:
        it = pool.imap(func, items, chunksize=chunksize)
        return list(track(it, len(items), desc))


@dataclass
class Reject:
    """A row that could not be used, with its line number and the reason."""

    line: int
    smiles: str
    reason: str


def write_rejects(path: str | os.PathLike, rejects: Sequence[Reject]) -> None:
    """Write rejected rows as CSV (line, smiles, reason)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "smiles", "reason"])
        writer.writerows((r.line, r.smiles, r.reason) for r in rejects)


def _handle_invalid(path: Path, rejects: list[Reject], on_invalid: str, rejects_path: str | os.PathLike | None) -> None:
    if on_invalid not in ON_INVALID:
        raise MolgenError(f"--on-invalid must be one of {', '.join(ON_INVALID)}, not {on_invalid!r}")
    if rejects and on_invalid == "error":
        r = rejects[0]
        where = f"{path}:{r.line}" if r.line > 0 else f"{path}"
        raise MolgenError(
            f"{where}: invalid molecule {r.smiles!r}: {r.reason} "
            f"({len(rejects)} bad row(s); use --on-invalid skip to drop them)"
        )
    if rejects_path is not None:  # written even when empty, so no stale list from an earlier run remains
        write_rejects(rejects_path, rejects)


def read_smiles(
    path: str | os.PathLike,
    smiles_column: str | None = None,
    on_invalid: str = "error",
    rejects_path: str | os.PathLike | None = None,
) -> list[str]:
    """Canonical SMILES of every valid row; invalid rows stop with an error or go to the rejects file."""
    if rejects_path is not None:
        check_output_path(rejects_path)
    strings, numbers = read_rows(path, smiles_column)
    results = parallel_map(canonical_or_reason, strings, desc="canonicalize")
    rejects = [Reject(n, s, why) for n, s, (c, why) in zip(numbers, strings, results) if c is None]
    _handle_invalid(Path(path), rejects, on_invalid, rejects_path)
    return [c for c, _ in results if c is not None]


# --------------------------------------------------------------------------- tokenized sets


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


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise MolgenError(f"{path}: no such file") from None
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$MOLGEN_CACHE_DIR`` or ``~/.cache/molgen``."""
    return Path(os.environ.get("MOLGEN_CACHE_DIR", Path.home() / ".cache" / "molgen"))


def pack_strings(strings: Sequence[str]) -> np.ndarray:
    """Strings as one uint8 array (newline-separated UTF-8), for .npz files without pickles."""
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def unpack_strings(array: np.ndarray) -> list[str]:
    """The strings of ``pack_strings``."""
    text = array.tobytes().decode("utf-8")
    return text.split("\n") if text else []


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
    _handle_invalid(path, data.rejects or [], on_invalid, rejects_path)
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


def padded(data: TokenizedSet, index: Sequence[int] | np.ndarray, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded id matrix [B, max length] (int64) and lengths [B] of the molecules at ``index``."""
    index = np.asarray(index, dtype=np.int64)
    lengths = data.lengths[index]
    width = int(lengths.max()) if len(index) else 0
    out = np.full((len(index), width), pad_id, dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    starts = data.offsets[index]
    out[mask] = data.ids[(starts[:, None] + np.arange(width)[None, :])[mask]]
    return out, lengths.astype(np.int64)
