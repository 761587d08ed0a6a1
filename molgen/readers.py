"""Reading SMILES files (CSV/TSV/.smi, gzipped or not), rejected rows and the --on-invalid choice."""
from __future__ import annotations

import csv
import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from molgen.chemistry import canonical_or_reason
from molgen.errors import MolgenError
from molgen.files import atomic_open, check_output_path
from molgen.parallel import parallel_map

SMILES_COLUMNS = ("SMILES", "smiles", "Smiles", "canonical_smiles", "CANONICAL_SMILES", "smi", "SMI", "mol", "molecule")
ON_INVALID = ("error", "skip")


def _open_text_lines(path: Path) -> Iterable[tuple[int, str]]:
    """Yield (line number, decoded line) with clear errors for binary or non-UTF-8 input.

    The file is read and decoded whole (a million lines in about a second); only a file that is
    binary or not UTF-8 is gone through line by line, to name the line at fault.
    """
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise MolgenError(f"{path}: no such file") from None
    except OSError as err:
        raise MolgenError(f"{path}: cannot open: {err.strerror}") from None
    with raw:
        head = raw.read(2)
        raw.seek(0)
        try:
            data = gzip.GzipFile(fileobj=raw).read() if head == b"\x1f\x8b" else raw.read()
        except (OSError, EOFError, zlib.error) as err:
            raise MolgenError(f"{path}: corrupt or truncated gzip file ({err})") from None
    text = None
    if b"\x00" not in data:
        try:  # utf-8-sig drops the byte-order mark that spreadsheet programs put before the header
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    if text is None:
        yield from _checked_lines(path, data)
        return
    number = 0
    for chunk in text.split("\n"):
        for line in chunk.rstrip("\r").split("\r"):  # a lone CR ends a line too (old Mac files)
            number += 1
            yield number, line


def _checked_lines(path: Path, data: bytes) -> Iterable[tuple[int, str]]:
    """The lines of ``data`` up to the first one that is binary or not UTF-8, which is a MolgenError naming it."""
    number = 0
    for chunk in data.split(b"\n"):
        for line in chunk.rstrip(b"\r").split(b"\r"):
            number += 1
            if b"\x00" in line:
                raise MolgenError(f"{path}:{number}: binary data (NUL byte); expected a text SMILES file")
            try:
                yield number, line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise MolgenError(f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start})") from None


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


def handle_invalid(path: Path, rejects: list[Reject], on_invalid: str, rejects_path: str | os.PathLike | None) -> None:
    """Apply ``--on-invalid``: stop naming the first reject ("error") or keep going ("skip"); write the rejects file."""
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
    handle_invalid(Path(path), rejects, on_invalid, rejects_path)
    return [c for c, _ in results if c is not None]

